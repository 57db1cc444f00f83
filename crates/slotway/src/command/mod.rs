//! The command table: arity, flags, key positions and routing shape, filled from the nodes' COMMAND reply,
//! with built-in rules for the commands slotway handles itself. No I/O.
//! STUB: the signatures are the contract; bodies are being written.
use resp::Value;
use smallvec::SmallVec;
use std::ops::Range;

/// Arguments of one request: the frame's bytes and each argument's byte range in it (index 0 = command name).
#[derive(Clone, Copy)]
pub struct Args<'a> {
    pub frame: &'a [u8],
    pub ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.frame[self.ranges[i].clone()]
    }
}

/// Commands slotway answers itself instead of forwarding.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LocalCommand {
    Ping,
    Echo,
    Quit,
    Select,
    Info,
    Hello,
    Auth,
    Reset,
    ReadOnly,
    ReadWrite,
    Client,
}

/// How a command is routed through the standalone endpoint.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Key-bearing: all keys must hash to one slot; sent to that slot's primary.
    /// (A command whose key spec yields zero keys for these args, e.g. EVAL with numkeys 0, goes to any primary.)
    Keys,
    /// Keyless, and any primary answers it the same way (TIME, LASTSAVE, PUBLISH, COMMAND ..., ECHO).
    AnyNode,
    /// Answered by slotway.
    Local(LocalCommand),
    /// Not available through the standalone endpoint (yet); the text says why, e.g. "blocking commands are not supported yet".
    Unsupported(&'static str),
}

/// Flags slotway cares about, from COMMAND's flags.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandFlags {
    pub write: bool,
    pub readonly: bool,
    pub blocking: bool,
    pub pubsub: bool,
    pub admin: bool,
    pub noscript: bool,
    pub movablekeys: bool,
}

#[derive(Clone, Debug)]
pub struct CommandInfo {
    /// Lower-case name (`get`, or `client|list` for a subcommand).
    pub name: String,
    /// Redis arity: positive = exact argument count (including the name); negative = at least -arity.
    pub arity: i32,
    pub flags: CommandFlags,
    /// ACL categories without the `@` (`read`, `string`, ...), for later ACL support.
    pub acl_categories: Vec<String>,
    pub route: Route,
    // (key spec representation is the implementer's choice; private fields are fine)
}

/// Why a request's keys could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Wrong number of arguments: the client gets `ERR wrong number of arguments for '<name>' command`.
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    /// A numkeys argument that isn't a number or exceeds the arguments (Redis's own wording where it has one).
    #[error("{0}")]
    Syntax(String),
}

#[derive(Debug, Clone, Default)]
pub struct CommandTable {
    // implementer's choice
}

impl CommandTable {
    /// Built-in table used when COMMAND cannot be had: core Redis commands slotway knows without asking.
    pub fn builtin() -> CommandTable {
        todo!()
    }

    /// Builds the table from a node's `COMMAND` reply (Redis 6 and 7 forms; Redis 7 key specs are used when present,
    /// legacy first/last/step otherwise), then applies the built-in routing rules on top.
    pub fn from_command_reply(reply: &Value) -> Result<CommandTable, String> {
        let _ = reply;
        todo!()
    }

    /// Looks a command up by name, case-insensitively, without allocating.
    pub fn lookup(&self, name: &[u8]) -> Option<&CommandInfo> {
        let _ = name;
        todo!()
    }

    /// The command (or, for container commands like OBJECT/XINFO/MEMORY/CLIENT, the subcommand) for these args.
    pub fn resolve(&self, args: Args<'_>) -> Option<&CommandInfo> {
        let _ = args;
        todo!()
    }
}

/// Appends to `out` the indexes (into `args`) of every key the request names; checks arity first.
pub fn key_indexes(info: &CommandInfo, args: Args<'_>, out: &mut SmallVec<[usize; 8]>) -> Result<(), KeyError> {
    let _ = (info, args, out);
    todo!()
}
