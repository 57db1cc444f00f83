use super::*;
use crate::command::Args;

fn table() -> &'static CommandTable {
    static T: std::sync::OnceLock<CommandTable> = std::sync::OnceLock::new();
    T.get_or_init(CommandTable::builtin)
}

fn info(line: &str) -> &'static CommandInfo {
    let words: Vec<&str> = line.split(' ').collect();
    let mut frame = Vec::new();
    let mut ranges = Vec::new();
    for w in &words {
        ranges.push(frame.len()..frame.len() + w.len());
        frame.extend_from_slice(w.as_bytes());
    }
    let frame: &'static [u8] = Box::leak(frame.into_boxed_slice());
    let ranges: &'static [std::ops::Range<usize>] = Box::leak(ranges.into_boxed_slice());
    table().resolve(Args { frame, ranges }).expect("known command")
}

fn user(rules: &str) -> User {
    compile("u", vec![sha256(b"pw")], rules, table()).unwrap()
}

#[test]
fn read_only_user() {
    let u = user("on +@read ~*");
    assert!(u.check(info("GET k"), [b"k".as_slice()]).is_ok());
    assert_eq!(u.check(info("SET k v"), [b"k".as_slice()]), Err(Denied::Command("set".into())));
    assert_eq!(Denied::Command("set".into()).message(), "NOPERM this user has no permissions to run the 'set' command");
}

#[test]
fn rules_apply_in_order() {
    let u = user("+@all -@dangerous +flushdb ~*");
    assert!(u.check(info("SET k v"), [b"k".as_slice()]).is_ok());
    assert!(u.check(info("FLUSHALL"), []).is_err(), "flushall is @dangerous");
    assert!(u.check(info("FLUSHDB"), []).is_ok(), "re-allowed by name after the category");
    let u = user("+@all -get ~*");
    assert!(u.check(info("GET k"), [b"k".as_slice()]).is_err());
    let u = user("+client ~*");
    assert!(u.check(info("CLIENT LIST"), []).is_ok(), "a container rule covers its subcommands");
}

#[test]
fn key_patterns_and_read_write_permissions() {
    let u = user("+@all ~app1:* %R~shared:*");
    assert!(u.check(info("GET app1:x"), [b"app1:x".as_slice()]).is_ok());
    assert_eq!(u.check(info("GET app2:x"), [b"app2:x".as_slice()]), Err(Denied::Key));
    assert!(u.check(info("GET shared:x"), [b"shared:x".as_slice()]).is_ok());
    assert_eq!(u.check(info("SET shared:x v"), [b"shared:x".as_slice()]), Err(Denied::Key));
    // Every key must be allowed.
    assert_eq!(u.check(info("MGET app1:a app2:b"), [b"app1:a".as_slice(), b"app2:b"]), Err(Denied::Key));
    assert!(u.can_read_key(b"shared:1") && !u.can_read_key(b"other"));
    let w = user("+@all %W~log:*");
    assert!(w.check(info("SET log:1 v"), [b"log:1".as_slice()]).is_ok());
    assert_eq!(w.check(info("GET log:1"), [b"log:1".as_slice()]), Err(Denied::Key));
}

#[test]
fn passwords_nopass_and_off() {
    let u = user("on +@all ~*");
    assert!(u.accepts(b"pw") && !u.accepts(b"nope"));
    assert!(user("nopass +@all").accepts(b"anything"));
    assert!(!user("off +@all ~*").accepts(b"pw"));
    assert_eq!(
        parse_sha256_hex("#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"),
        Some(sha256(b"password"))
    );
    assert_eq!(parse_sha256_hex("abc"), None);
}

#[test]
fn unsupported_rules_are_errors() {
    for bad in ["&chan*", "+@nosuchcategory", "+nosuchcommand", "%X~k", ">plaintext", "resetchannels"] {
        let err = compile("u", vec![], bad, table()).unwrap_err();
        assert!(err.contains(bad) || err.contains("ACL"), "{bad}: {err}");
    }
}
