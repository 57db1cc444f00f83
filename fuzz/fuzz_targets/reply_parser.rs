#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| slotway_fuzz::reply_parser(data));
