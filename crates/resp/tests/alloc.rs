//! Allocation accounting with a counting global allocator (this test binary only; the library itself stays
//! `#![forbid(unsafe_code)]`). Counters are per thread, so the test harness's own threads don't disturb them.
use bytes::{Bytes, BytesMut};
use resp::{encode, Limits, Protocol, ReplyScanner, RequestDecoder, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (allocations, largest allocation) made by `f` on this thread.
fn measure<R>(f: impl FnOnce() -> R) -> (usize, usize, R) {
    ALLOCS.with(|c| c.set(0));
    LARGEST.with(|c| c.set(0));
    let r = f();
    (ALLOCS.with(|c| c.get()), LARGEST.with(|c| c.get()), r)
}

fn command(args: &[&str]) -> BytesMut {
    let mut out = BytesMut::new();
    encode::command(&mut out, args);
    out
}

#[test]
fn the_counter_counts() {
    let (n, largest, v) = measure(|| Vec::<u8>::with_capacity(100));
    assert_eq!((n, largest, v.capacity()), (1, 100, 100));
}

#[test]
fn request_hot_path_does_not_allocate() {
    let mut d = RequestDecoder::new(Limits::default());
    let set = command(&["SET", "key:1", "value"]);
    let eight = command(&["MSET", "a", "1", "b", "2", "c", "3", "d"]);
    // Warm-up (nothing should be lazily allocated, but be fair).
    d.decode(&set).unwrap().unwrap();
    let (n, _, r) = measure(|| {
        let a = d.decode(&set).unwrap().unwrap();
        let b = d.decode(&eight).unwrap().unwrap();
        // Resumable path too: a frame in three pieces.
        assert!(d.decode(&set[..5]).unwrap().is_none());
        assert!(d.decode(&set[..17]).unwrap().is_none());
        let c = d.decode(&set).unwrap().unwrap();
        (a.len(), b.arg_count(), c.len())
    });
    assert_eq!(r, (set.len(), 8, set.len()));
    assert_eq!(n, 0, "decoding requests of up to 8 args allocates nothing");
}

#[test]
fn reply_scanning_does_not_allocate() {
    let mut s = ReplyScanner::new(Limits::default());
    let items: Vec<Value> = (0..100).map(|i| Value::bulk(format!("value:{i}"))).collect();
    let array = Value::Array(items).to_bytes(Protocol::Resp3);
    let nested = Bytes::from_static(b"|1\r\n+a\r\n+b\r\n*2\r\n%1\r\n+k\r\n~1\r\n*1\r\n>1\r\n:1\r\n$-1\r\n");
    let (n, _, _) = measure(|| {
        assert_eq!(s.scan(&array).unwrap().unwrap().len, array.len());
        assert_eq!(s.scan(&nested).unwrap().unwrap().len, nested.len());
        assert!(s.scan(&array[..array.len() / 2]).unwrap().is_none());
        assert_eq!(s.scan(&array).unwrap().unwrap().len, array.len());
    });
    assert_eq!(n, 0);
}

#[test]
fn encoding_into_reserved_buffer_does_not_allocate() {
    let mut out = BytesMut::with_capacity(4096);
    let (n, _, _) = measure(|| {
        encode::command(&mut out, &["SET", "k", "v"]);
        encode::integer(&mut out, i64::MIN);
        encode::double(&mut out, -2.2250738585072014e-308, Protocol::Resp3);
        encode::double(&mut out, 1.5, Protocol::Resp2);
        encode::error(&mut out, "ERR x\r\ny");
        encode::nil(&mut out, Protocol::Resp2);
    });
    assert_eq!(n, 0);
}

#[test]
fn declared_lengths_reserve_nothing() {
    const SMALL: usize = 4096;
    let mut d = RequestDecoder::new(Limits::default());
    let (_, largest, _) = measure(|| {
        assert!(d.decode(b"*1000000000\r\n").unwrap().is_none());
        assert!(d.decode(b"*1000000000\r\n$500000000\r\nabc").unwrap().is_none());
        assert!(RequestDecoder::new(Limits::default()).decode(b"*1\r\n$4000000000\r\n").is_err());
        assert!(RequestDecoder::new(Limits::default()).decode(b"*2000000000\r\n").is_err());
        let mut s = ReplyScanner::new(Limits::default());
        assert!(s.scan(b"*1000000000\r\n%4611686018427387903\r\n$500000000\r\nab").unwrap().is_none());
        let v = Bytes::from_static(b"*1000000000\r\n%1000000000\r\n~1000000000\r\n:1\r\n:2\r\n");
        assert!(Value::parse(&v, &Limits::default()).unwrap().is_none());
    });
    assert!(largest < SMALL, "largest allocation {largest} bytes");
}
