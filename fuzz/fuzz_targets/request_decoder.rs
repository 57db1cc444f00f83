#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| slotway_fuzz::request_decoder(data));
