//! ACL SETUSER's rules applied to a user's definition, as Redis 7.0 applies them: in order, on top of what the
//! user had (a new user starts `off`, without passwords, keys or commands, and with the channels of
//! `acl_pubsub_default`), each rule checked as it comes, the whole command refused at the first bad rule with
//! Redis's wording. Pure: the caller compiles the result and swaps the users.
use super::{compile, sha256, PubSubDefault, User};
use crate::command::CommandTable;

/// A user as ACL SETUSER edits it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definition {
    /// SHA-256 digests of the accepted passwords.
    pub hashes: Vec<[u8; 32]>,
    pub nopass: bool,
    /// Every other rule, in order (`on`, `+@all`, `~app:*`, ...).
    pub rules: Vec<String>,
}

impl Definition {
    /// What a user created by ACL SETUSER starts as (Redis: `off`, no passwords, `resetkeys`, `-@all`, channels as
    /// `acl-pubsub-default` says).
    pub fn new_user() -> Definition {
        Definition { hashes: Vec::new(), nopass: false, rules: vec!["off".into(), "-@all".into()] }
    }

    /// The rules as [`compile`] takes them.
    pub fn rules_text(&self) -> String {
        let mut text = self.rules.join(" ");
        if self.nopass {
            text.push_str(" nopass");
        }
        text
    }

    /// Compiles the definition for user `name`.
    pub fn compile(&self, name: &str, table: &CommandTable, pubsub: PubSubDefault) -> Result<User, String> {
        compile(name, self.hashes.clone(), &self.rules_text(), table, pubsub)
    }
}

/// `ERR Error in ACL SETUSER modifier '<rule>': <why>`, Redis's wording.
fn modifier_error(rule: &[u8], why: &str) -> String {
    format!("ERR Error in ACL SETUSER modifier '{}': {why}", String::from_utf8_lossy(rule))
}

/// A `#<hash>` / `!<hash>` digest: exactly 64 lower-case hex digits.
fn parse_hash(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)) {
        return None;
    }
    super::parse_sha256_hex(std::str::from_utf8(hex).ok()?)
}

/// Applies `rules` (ACL SETUSER's arguments after the name) to `def`. Err: the client's error reply, without `-`.
pub fn apply(
    def: &mut Definition,
    name: &str,
    rules: &[&[u8]],
    table: &CommandTable,
    pubsub: PubSubDefault,
) -> Result<(), String> {
    const BAD_HASH: &str =
        "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters";
    for &rule in rules {
        let lower = rule.to_ascii_lowercase();
        match lower.as_slice() {
            b"nopass" => {
                def.hashes.clear();
                def.nopass = true;
            }
            b"resetpass" => {
                def.hashes.clear();
                def.nopass = false;
            }
            b"reset" => {
                def.hashes.clear();
                def.nopass = false;
                let channels = match pubsub {
                    PubSubDefault::ResetChannels => "resetchannels",
                    PubSubDefault::AllChannels => "allchannels",
                };
                def.rules = ["resetkeys", channels, "off", "-@all"].map(String::from).into();
            }
            b"clearselectors" => {} // slotway's users never have selectors
            // >password / <password add or remove a password, #hash / !hash the same by its SHA-256 hex digest.
            _ if matches!(rule.first(), Some(b'>' | b'<' | b'#' | b'!')) => {
                let digest = match rule[0] {
                    b'>' | b'<' => sha256(&rule[1..]),
                    _ => parse_hash(&rule[1..]).ok_or_else(|| modifier_error(rule, BAD_HASH))?,
                };
                if matches!(rule[0], b'>' | b'#') {
                    if !def.hashes.contains(&digest) {
                        def.hashes.push(digest);
                    }
                    def.nopass = false;
                } else if def.hashes.contains(&digest) {
                    def.hashes.retain(|h| *h != digest);
                } else {
                    return Err(modifier_error(
                        rule,
                        "The password you are trying to remove from the user does not exist",
                    ));
                }
            }
            _ if rule.starts_with(b"(") => {
                return Err(modifier_error(rule, "selectors are not supported by slotway's users"));
            }
            _ => {
                let Ok(text) = std::str::from_utf8(rule) else {
                    return Err(modifier_error(rule, "Syntax error"));
                };
                if text.is_empty() || text.contains(char::is_whitespace) {
                    return Err(modifier_error(rule, "Syntax error"));
                }
                let mut next = def.clone();
                next.rules.push(text.to_string());
                // Checked in context (a pattern after `allkeys` is an error), as Redis checks each rule.
                if let Err(e) = next.compile(name, table, pubsub) {
                    let why = if e.contains("unknown command") || e.contains("unknown ACL category") {
                        "Unknown command or category name in ACL"
                    } else if e.contains("Adding a pattern after the * pattern (or the 'allkeys'") {
                        super::ADDING_AFTER_ALLKEYS
                    } else if e.contains("Adding a pattern after the * pattern (or the 'allchannels'") {
                        super::ADDING_AFTER_ALLCHANNELS
                    } else {
                        "Syntax error"
                    };
                    return Err(modifier_error(rule, why));
                }
                *def = next;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Args, CommandTable};

    fn args(words: &[&str]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut frame = Vec::new();
        let mut ranges = Vec::new();
        for w in words {
            ranges.push(frame.len()..frame.len() + w.len());
            frame.extend_from_slice(w.as_bytes());
        }
        (frame, ranges)
    }

    fn setuser(def: &mut Definition, rules: &[&str]) -> Result<(), String> {
        let rules: Vec<&[u8]> = rules.iter().map(|r| r.as_bytes()).collect();
        apply(def, "bob", &rules, &CommandTable::builtin(), PubSubDefault::ResetChannels)
    }

    #[test]
    fn rules_apply_in_order_on_top_of_the_user() {
        let table = CommandTable::builtin();
        let mut def = Definition::new_user();
        setuser(&mut def, &["on", ">123", "+@scripting", "+set", "~x*"]).unwrap();
        let bob = def.compile("bob", &table, PubSubDefault::ResetChannels).unwrap();
        assert!(bob.accepts(b"123") && !bob.accepts(b"1234"));
        let (frame, ranges) = args(&["SET", "xx", "1"]);
        let info = table.resolve(Args { frame: &frame, ranges: &ranges }).unwrap();
        assert!(bob.check_request(info, Args { frame: &frame, ranges: &ranges }).is_ok());
        let (frame, ranges) = args(&["SET", "yy", "1"]);
        assert!(bob.check_request(info, Args { frame: &frame, ranges: &ranges }).is_err(), "key yy");
        let (frame, ranges) = args(&["HSET", "xx", "f", "1"]);
        let hset = table.resolve(Args { frame: &frame, ranges: &ranges }).unwrap();
        assert!(bob.check_request(hset, Args { frame: &frame, ranges: &ranges }).is_err(), "hset");
        assert_eq!(bob.acl_list_line().split(' ').nth(2), Some("on"));

        // Later calls add to it; passwords come and go.
        let mut again = bob.definition();
        setuser(&mut again, &[">456", "<123", "+hset"]).unwrap();
        let bob = again.compile("bob", &table, PubSubDefault::ResetChannels).unwrap();
        assert!(bob.accepts(b"456") && !bob.accepts(b"123"));
        assert!(bob.check_request(hset, Args { frame: &frame, ranges: &ranges }).is_ok());
        setuser(&mut again, &["nopass"]).unwrap();
        assert!(again.nopass && again.hashes.is_empty());
        setuser(&mut again, &["reset"]).unwrap();
        let reset = again.compile("bob", &table, PubSubDefault::ResetChannels).unwrap();
        assert_eq!(reset.acl_list_line(), "user bob off resetchannels -@all");
    }

    #[test]
    fn bad_rules_are_refused_with_redis_wording_and_change_nothing() {
        let mut def = Definition::new_user();
        let before = def.clone();
        assert_eq!(
            setuser(&mut def, &["on", "+nosuchcommand"]),
            Err("ERR Error in ACL SETUSER modifier '+nosuchcommand': Unknown command or category name in ACL".into())
        );
        let mut def = before.clone();
        assert_eq!(
            setuser(&mut def, &["allkeys", "~a*"]).unwrap_err(),
            format!("ERR Error in ACL SETUSER modifier '~a*': {}", super::super::ADDING_AFTER_ALLKEYS)
        );
        let mut def = before.clone();
        assert_eq!(
            setuser(&mut def, &["#abc"]).unwrap_err(),
            "ERR Error in ACL SETUSER modifier '#abc': The password hash must be exactly 64 characters and contain \
             only lowercase hexadecimal characters"
        );
        assert!(setuser(&mut def, &["<nope"]).unwrap_err().contains("does not exist"));
        assert!(setuser(&mut def, &["bogus"]).unwrap_err().ends_with("'bogus': Syntax error"));
        assert!(setuser(&mut def, &["(~x* +get)"]).unwrap_err().contains("selectors"));
    }
}
