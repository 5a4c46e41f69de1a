//! The command line, parsed by hand: flags (`--name value` or
//! `--name=value`) may come anywhere, the rest are the command and its
//! arguments. Every flag has an environment variable behind it, so a shell
//! session can `export` the key, token and server once.

use std::collections::BTreeMap;
use std::fmt;

use palm_amqp::dlq::Selector;
use palm_core::eth::{self, Address, LocalKey, keccak256};
use serde_json::Value;

/// The help text (`--help`, and after a usage error).
pub(crate) const USAGE: &str = "\
palmctl: a development client for Palm's public API (palmdao). It signs
Sign-In with Ethereum messages and EIP-712 votes with a local key, so the API
can be used without a browser wallet. Development keys only: never pass the
key of a wallet that holds anything. The `dlq` commands are the operator's
tools for RabbitMQ's dead-letter queues.

Usage: palmctl [FLAGS] COMMAND [ARGS]

Commands:
  address                      print the key's address (EIP-55)
  login                        sign in (SIWE); prints only the session token
  get PATH                     GET PATH and print the JSON answer
  post PATH [JSON]             POST JSON (or no body) to PATH
  patch PATH JSON              PATCH JSON to PATH
  link-wallet --with-seed WORD | --with-key 0xHEX
                               link a second wallet to the signed-in PalmID
  vote PROPOSAL CHOICE         sign the EIP-712 vote now and submit it
  typed-data PROPOSAL CHOICE [--voter 0xADDRESS]
                               print the eth_signTypedData_v4 document of
                               the vote, for signing with a real wallet

Dead letters (an operator's commands, on RabbitMQ rather than the API):
  dlq list [QUEUE...]          every DLQ with its depth and origin queue
                               (Palm's queues unless QUEUEs are named)
  dlq show DLQ [--limit N]     the first N (20) messages: reason, headers,
                               x-death, a body preview; nothing is consumed
  dlq replay DLQ --id ID | --filter GLOB | --all [--limit N] [--dry-run]
                 [--via-exchange]
                               send dead letters back to their origin queue
                               (or, --via-exchange, to PREFIX.events with
                               their routing key); each leaves the DLQ only
                               once its replay is confirmed. GLOB matches the
                               routing key or the reason (* and ?)
  dlq purge DLQ [--yes]        delete a DLQ's messages after you type its
                               name (or --yes)
  DLQ is a full name (palm.palmvalidator.jobs.dlq) or the queue's short name
  (palmvalidator.jobs). --json prints JSON. Every dlq action writes one JSON
  audit line (who, what, which ids; never a body) to stderr.

Flags, each with its environment variable and default:
  --api URL       PALMCTL_API       http://127.0.0.1:8080
  --key 0xHEX     PALMCTL_KEY       a 32-byte private key
  --seed WORD     PALMCTL_SEED      a development key: keccak256(WORD)
  --token TOKEN   PALMCTL_TOKEN     the session token `login` printed
  --domain HOST   PALMCTL_DOMAIN    localhost:8080 (palmdao's auth.domain)
  --uri URI       PALMCTL_URI       http://DOMAIN/v1/auth/siwe (auth.uri)
  --chain-id N    PALMCTL_CHAIN_ID  1
  --amqp-url URL  PALMCTL_AMQP_URL, else the services' PALM__AMQP__URL;
                  amqp://guest:guest@127.0.0.1:5672/%2f
  --amqp-prefix P PALMCTL_AMQP_PREFIX, else PALM__AMQP__PREFIX; palm
  -h, --help      this text

Sign-ins name DOMAIN, URI and the chain id, which must match palmdao's
auth.domain, auth.uri and auth.chain_ids; votes are signed for the app
DOMAIN on the chain id. CHOICE is JSON as the proposal's voting type wants
it, counting choices from 1: 2 (single-choice), [1,3] (approval),
{\"1\":2,\"3\":1} (weighted).

Exit status: 0 done; 1 the call failed (the problem document goes to
stderr), or a purge was not confirmed, or a replay's --id is not there;
2 bad usage.

Example:
  export PALMCTL_SEED=alice
  export PALMCTL_TOKEN=$(palmctl login)
  palmctl get /v1/me
";

/// Flags that take a value; `--help` is handled apart.
const FLAGS: [&str; 15] = [
    "api",
    "key",
    "seed",
    "token",
    "domain",
    "uri",
    "chain-id",
    "with-key",
    "with-seed",
    "voter",
    "amqp-url",
    "amqp-prefix",
    "limit",
    "id",
    "filter",
];

/// Flags that take no value.
const SWITCHES: [&str; 5] = ["all", "dry-run", "yes", "json", "via-exchange"];

/// Flags only some commands take; any other command refuses them.
const COMMAND_FLAGS: [&str; 11] = [
    "with-key",
    "with-seed",
    "voter",
    "limit",
    "id",
    "filter",
    "all",
    "dry-run",
    "yes",
    "json",
    "via-exchange",
];

/// A command line that cannot be run; exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// What every command may use.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// API base URL, without a trailing slash.
    pub(crate) api: String,
    /// The signing key, when one was given.
    pub(crate) key: Option<LocalKey>,
    /// Bearer token for authenticated calls.
    pub(crate) token: Option<String>,
    /// The SIWE domain, and the `app` votes are signed for.
    pub(crate) domain: String,
    /// The SIWE URI.
    pub(crate) uri: String,
    /// Chain id of sign-ins and of the votes' EIP-712 domain.
    pub(crate) chain_id: u64,
}

/// One subcommand with its arguments.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// Print the key's address.
    Address,
    /// Sign in and print the token.
    Login,
    /// `GET path`.
    Get { path: String },
    /// `POST path` with an optional JSON body.
    Post { path: String, body: Option<Value> },
    /// `PATCH path` with a JSON body.
    Patch { path: String, body: Value },
    /// Link `wallet` to the signed-in PalmID.
    LinkWallet { wallet: LocalKey },
    /// Sign and submit a vote.
    Vote { proposal: String, choice: Value },
    /// Print a vote's typed data for `voter`.
    TypedData {
        proposal: String,
        choice: Value,
        voter: Address,
    },
    /// A dead-letter queue operation.
    Dlq(DlqCommand),
}

/// A `dlq` subcommand and the broker it runs against.
#[derive(Clone)]
pub(crate) struct DlqCommand {
    /// `amqp://user:pass@host:port/vhost`.
    pub(crate) amqp_url: String,
    /// Prefix of every queue name (`amqp.prefix` of the services).
    pub(crate) prefix: String,
    /// Print JSON instead of text.
    pub(crate) json: bool,
    /// What to do.
    pub(crate) action: DlqAction,
}

impl fmt::Debug for DlqCommand {
    // The URL holds the broker password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DlqCommand")
            .field("prefix", &self.prefix)
            .field("json", &self.json)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

/// The `dlq` subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DlqAction {
    /// Depth of each DLQ of these queues (full names).
    List { queues: Vec<String> },
    /// The first `limit` messages of `dlq`.
    Show { dlq: String, limit: usize },
    /// Replay the selected messages of `dlq`.
    Replay {
        dlq: String,
        selector: Selector,
        limit: Option<usize>,
        dry_run: bool,
        via_exchange: bool,
    },
    /// Purge `dlq`, asking first unless `yes`.
    Purge { dlq: String, yes: bool },
}

/// Short names of the queues Palm's services consume; `dlq list` shows
/// their DLQs. A test compares it with the services' own topologies.
pub(crate) const PALM_QUEUES: [&str; 3] = [
    "palmdao.results",
    "palmvalidator.jobs",
    "palmvalidator-discord.jobs",
];

/// A parsed command line.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    /// Global options.
    pub(crate) options: Options,
    /// What to do.
    pub(crate) command: Command,
}

fn parse_key(text: &str, source: &str) -> Result<LocalKey, UsageError> {
    let bad = || usage(format!("{source} must be 0x followed by 64 hex digits"));
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.len() != 64 || !digits.is_ascii() {
        return Err(bad());
    }
    let mut bytes = [0_u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    LocalKey::from_bytes(&bytes)
        .map_err(|_| usage(format!("{source} is not a valid secp256k1 key")))
}

fn seed_key(seed: &str, source: &str) -> Result<LocalKey, UsageError> {
    if seed.is_empty() {
        return Err(usage(format!("{source} must not be empty")));
    }
    LocalKey::from_bytes(&keccak256(seed.as_bytes()))
        .map_err(|_| usage(format!("{source} does not make a valid key; pick another")))
}

fn json_argument(text: &str, what: &str) -> Result<Value, UsageError> {
    serde_json::from_str(text).map_err(|e| usage(format!("{what} is not JSON ({e}): {text}")))
}

fn api_path(text: &str) -> String {
    if text.starts_with('/') {
        text.to_owned()
    } else {
        format!("/{text}")
    }
}

/// Parses `args` (without the program name); `env` reads an environment
/// variable (unset or empty: `None`). `None` asks for the help text.
pub(crate) fn parse(
    args: Vec<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Invocation>, UsageError> {
    let mut flags: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut positionals = Vec::new();
    let mut help = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            help = true;
        } else if arg == "--" {
            positionals.extend(args.by_ref());
        } else if let Some(flag) = arg.strip_prefix("--") {
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (flag, None),
            };
            if let Some(switch) = SWITCHES.into_iter().find(|known| *known == name) {
                if inline.is_some() {
                    return Err(usage(format!("--{switch} takes no value")));
                }
                flags.insert(switch, String::new());
                continue;
            }
            let name = FLAGS
                .into_iter()
                .find(|known| *known == name)
                .ok_or_else(|| usage(format!("unknown flag --{name}")))?;
            let value = inline
                .or_else(|| args.next())
                .ok_or_else(|| usage(format!("--{name} needs a value")))?;
            if flags.insert(name, value).is_some() {
                return Err(usage(format!("--{name} given twice")));
            }
        } else {
            positionals.push(arg);
        }
    }
    if help || positionals.first().is_some_and(|name| name == "help") {
        return Ok(None);
    }
    let options = options(&flags, &env)?;
    let command = if positionals.first().is_some_and(|name| name == "dlq") {
        Command::Dlq(dlq_command(&positionals[1..], &mut flags, &env)?)
    } else {
        command(&positionals, &mut flags, &options)?
    };
    if let Some(name) = COMMAND_FLAGS
        .into_iter()
        .find(|name| flags.contains_key(name))
    {
        return Err(usage(format!(
            "--{name} does not apply to `{}`",
            positionals[0]
        )));
    }
    Ok(Some(Invocation { options, command }))
}

fn options(
    flags: &BTreeMap<&'static str, String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Options, UsageError> {
    let setting = |flag: &str, var: &str| flags.get(flag).cloned().or_else(|| env(var));
    let key = match (flags.get("key"), flags.get("seed")) {
        (Some(_), Some(_)) => return Err(usage("give --key or --seed, not both")),
        (Some(key), None) => Some(parse_key(key, "--key")?),
        (None, Some(seed)) => Some(seed_key(seed, "--seed")?),
        (None, None) => match (env("PALMCTL_KEY"), env("PALMCTL_SEED")) {
            (Some(key), _) => Some(parse_key(&key, "PALMCTL_KEY")?),
            (None, Some(seed)) => Some(seed_key(&seed, "PALMCTL_SEED")?),
            (None, None) => None,
        },
    };
    let api = setting("api", "PALMCTL_API").unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    if !(api.starts_with("http://") || api.starts_with("https://")) {
        return Err(usage(format!(
            "--api must be an http:// or https:// URL, not `{api}`"
        )));
    }
    let domain = setting("domain", "PALMCTL_DOMAIN").unwrap_or_else(|| "localhost:8080".to_owned());
    let uri =
        setting("uri", "PALMCTL_URI").unwrap_or_else(|| format!("http://{domain}/v1/auth/siwe"));
    let chain_id = match setting("chain-id", "PALMCTL_CHAIN_ID") {
        Some(text) => text
            .parse()
            .map_err(|_| usage(format!("the chain id must be a number, not `{text}`")))?,
        None => 1,
    };
    Ok(Options {
        api: api.trim_end_matches('/').to_owned(),
        key,
        token: setting("token", "PALMCTL_TOKEN"),
        domain,
        uri,
        chain_id,
    })
}

fn command(
    positionals: &[String],
    flags: &mut BTreeMap<&'static str, String>,
    options: &Options,
) -> Result<Command, UsageError> {
    let Some((name, rest)) = positionals.split_first() else {
        return Err(usage("no command given"));
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let need_key = || match options.key {
        Some(_) => Ok(()),
        None => Err(usage(format!(
            "`{name}` needs a key: --key 0xHEX or --seed WORD (or PALMCTL_KEY / PALMCTL_SEED)"
        ))),
    };
    let need_token = || match options.token {
        Some(_) => Ok(()),
        None => Err(usage(format!(
            "`{name}` needs a session: pass --token (or PALMCTL_TOKEN) with what `palmctl login` printed"
        ))),
    };
    let wrong_arguments = || usage(format!("wrong arguments for `{name}`"));
    let command = match (name.as_str(), rest.as_slice()) {
        ("address", []) => {
            need_key()?;
            Command::Address
        }
        ("login", []) => {
            need_key()?;
            Command::Login
        }
        ("get", [path]) => Command::Get {
            path: api_path(path),
        },
        ("post", [path]) => Command::Post {
            path: api_path(path),
            body: None,
        },
        ("post", [path, body]) => Command::Post {
            path: api_path(path),
            body: Some(json_argument(body, "the body")?),
        },
        ("patch", [path, body]) => Command::Patch {
            path: api_path(path),
            body: json_argument(body, "the body")?,
        },
        ("link-wallet", []) => {
            let wallet = match (flags.remove("with-key"), flags.remove("with-seed")) {
                (Some(key), None) => parse_key(&key, "--with-key")?,
                (None, Some(seed)) => seed_key(&seed, "--with-seed")?,
                _ => {
                    return Err(usage(
                        "`link-wallet` needs one of --with-key or --with-seed",
                    ));
                }
            };
            need_token()?;
            Command::LinkWallet { wallet }
        }
        ("vote", [proposal, choice]) => {
            need_key()?;
            need_token()?;
            Command::Vote {
                proposal: (*proposal).to_owned(),
                choice: json_argument(choice, "the choice")?,
            }
        }
        ("typed-data", [proposal, choice]) => {
            let voter = match (flags.remove("voter"), &options.key) {
                (Some(text), _) => {
                    eth::parse_address(&text).map_err(|e| usage(format!("--voter: {e}: {text}")))?
                }
                (None, Some(key)) => key.address(),
                (None, None) => {
                    return Err(usage(
                        "`typed-data` needs --voter 0xADDRESS, or a key to take it from",
                    ));
                }
            };
            Command::TypedData {
                proposal: (*proposal).to_owned(),
                choice: json_argument(choice, "the choice")?,
                voter,
            }
        }
        (
            "address" | "login" | "get" | "post" | "patch" | "link-wallet" | "vote" | "typed-data",
            _,
        ) => return Err(wrong_arguments()),
        _ => return Err(usage(format!("unknown command `{name}`"))),
    };
    Ok(command)
}

/// A number argument of a flag.
fn count(text: &str, flag: &str) -> Result<usize, UsageError> {
    text.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| usage(format!("--{flag} must be a positive number, not `{text}`")))
}

/// The full DLQ name for `text`: a full name, or a queue's short name with or
/// without its prefix and `.dlq`.
pub(crate) fn dlq_name(prefix: &str, text: &str) -> String {
    let short = text.strip_prefix(&format!("{prefix}.")).unwrap_or(text);
    let short = short.strip_suffix(".dlq").unwrap_or(short);
    format!("{prefix}.{short}.dlq")
}

fn dlq_command(
    rest: &[String],
    flags: &mut BTreeMap<&'static str, String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<DlqCommand, UsageError> {
    let setting = |flag: &str, vars: [&str; 2]| {
        flags
            .get(flag)
            .cloned()
            .or_else(|| vars.into_iter().find_map(env))
    };
    let amqp_url = setting("amqp-url", ["PALMCTL_AMQP_URL", "PALM__AMQP__URL"])
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
        return Err(usage(
            "--amqp-url must be an amqp:// or amqps:// URL".to_owned(),
        ));
    }
    let prefix = setting("amqp-prefix", ["PALMCTL_AMQP_PREFIX", "PALM__AMQP__PREFIX"])
        .unwrap_or_else(|| "palm".to_owned());
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(usage(format!(
            "--amqp-prefix must be ASCII letters, digits, '-', '_' or '.', not `{prefix}`"
        )));
    }
    let json = flags.remove("json").is_some();
    let mut limit = || {
        flags
            .remove("limit")
            .map(|n| count(&n, "limit"))
            .transpose()
    };
    let action = match rest.split_first() {
        Some((name, queues)) if name == "list" => DlqAction::List {
            queues: if queues.is_empty() {
                PALM_QUEUES
                    .iter()
                    .map(|q| format!("{prefix}.{q}"))
                    .collect()
            } else {
                queues
                    .iter()
                    .map(|q| {
                        let dlq = dlq_name(&prefix, q);
                        dlq.trim_end_matches(".dlq").to_owned()
                    })
                    .collect()
            },
        },
        Some((name, [dlq])) if name == "show" => DlqAction::Show {
            dlq: dlq_name(&prefix, dlq),
            limit: limit()?.unwrap_or(20),
        },
        Some((name, [dlq])) if name == "replay" => {
            let limit = limit()?;
            let selector = match (
                flags.remove("id"),
                flags.remove("filter"),
                flags.remove("all"),
            ) {
                (Some(id), None, None) => Selector::Id(id),
                (None, Some(glob), None) => Selector::Matching(glob),
                (None, None, Some(_)) => Selector::All,
                _ => {
                    return Err(usage(
                        "`dlq replay` needs exactly one of --id ID, --filter GLOB or --all",
                    ));
                }
            };
            if matches!(selector, Selector::Id(_)) && limit.is_some() {
                return Err(usage("--limit does not apply to --id (one message)"));
            }
            DlqAction::Replay {
                dlq: dlq_name(&prefix, dlq),
                selector,
                limit,
                dry_run: flags.remove("dry-run").is_some(),
                via_exchange: flags.remove("via-exchange").is_some(),
            }
        }
        Some((name, [dlq])) if name == "purge" => DlqAction::Purge {
            dlq: dlq_name(&prefix, dlq),
            yes: flags.remove("yes").is_some(),
        },
        Some((name, _)) if ["show", "replay", "purge"].contains(&name.as_str()) => {
            return Err(usage(format!("`dlq {name}` takes one DLQ")));
        }
        Some((name, _)) => return Err(usage(format!("unknown command `dlq {name}`"))),
        None => {
            return Err(usage(
                "`dlq` needs a subcommand: list, show, replay or purge",
            ));
        }
    };
    Ok(DlqCommand {
        amqp_url,
        prefix,
        json,
        action,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn parse_some(
        args: Vec<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Invocation, UsageError> {
        parse(args, env).map(|parsed| parsed.expect("not a help request"))
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_match_palmdaos_local_run() {
        let parsed = parse_some(args("login --seed alice"), no_env).unwrap();
        assert_eq!(parsed.options.api, "http://127.0.0.1:8080");
        assert_eq!(parsed.options.domain, "localhost:8080");
        assert_eq!(parsed.options.uri, "http://localhost:8080/v1/auth/siwe");
        assert_eq!(parsed.options.chain_id, 1);
        assert_eq!(
            parsed.options.key.unwrap().address(),
            LocalKey::from_bytes(&keccak256(b"alice"))
                .unwrap()
                .address()
        );
    }

    #[test]
    fn flags_win_over_the_environment_and_may_come_anywhere() {
        let env = |name: &str| match name {
            "PALMCTL_API" => Some("http://env:1/".to_owned()),
            "PALMCTL_TOKEN" => Some("env-token".to_owned()),
            "PALMCTL_SEED" => Some("bob".to_owned()),
            "PALMCTL_DOMAIN" => Some("palm.test".to_owned()),
            _ => None,
        };
        let parsed = parse_some(args("get me --token flag-token --chain-id=10"), env).unwrap();
        assert_eq!(parsed.options.api, "http://env:1");
        assert_eq!(parsed.options.token.as_deref(), Some("flag-token"));
        assert_eq!(parsed.options.chain_id, 10);
        assert_eq!(parsed.options.uri, "http://palm.test/v1/auth/siwe");
        assert!(matches!(parsed.command, Command::Get { path } if path == "/me"));
        // A key flag replaces the environment's seed.
        let key = format!("0x{}", "11".repeat(32));
        let parsed = parse_some(args(&format!("address --key {key}")), env).unwrap();
        assert_ne!(
            parsed.options.key.unwrap().address(),
            seed_key("bob", "").unwrap().address()
        );
    }

    #[test]
    fn commands_take_their_arguments() {
        let token = |name: &str| (name == "PALMCTL_TOKEN").then(|| "t".to_owned());
        let parsed = parse_some(args(r#"post /v1/communities {"slug":"x"}"#), token).unwrap();
        assert!(
            matches!(parsed.command, Command::Post { body: Some(body), .. } if body == json!({ "slug": "x" }))
        );
        let parsed = parse_some(args("vote 0192 [1,3] --seed alice"), token).unwrap();
        assert!(matches!(parsed.command, Command::Vote { choice, .. } if choice == json!([1, 3])));
        let parsed = parse_some(args("link-wallet --with-seed other"), token).unwrap();
        assert!(matches!(parsed.command, Command::LinkWallet { .. }));
        let voter = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let parsed = parse_some(args(&format!("typed-data p 2 --voter {voter}")), no_env).unwrap();
        assert!(
            matches!(parsed.command, Command::TypedData { voter: v, .. } if v.to_checksum(None) == voter)
        );
        assert!(parse(args("--help anything"), no_env).is_ok_and(|p| p.is_none()));
        assert!(parse(args("help"), no_env).is_ok_and(|p| p.is_none()));
    }

    #[test]
    fn dlq_commands_take_their_flags_and_environment() {
        let dlq =
            |line: &str, env: &dyn Fn(&str) -> Option<String>| match parse_some(args(line), env)
                .unwrap()
                .command
            {
                Command::Dlq(command) => command,
                other => panic!("not a dlq command: {other:?}"),
            };
        let list = dlq("dlq list", &no_env);
        assert_eq!(list.amqp_url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(list.prefix, "palm");
        assert_eq!(
            list.action,
            DlqAction::List {
                queues: vec![
                    "palm.palmdao.results".into(),
                    "palm.palmvalidator.jobs".into(),
                    "palm.palmvalidator-discord.jobs".into()
                ]
            }
        );
        // The services' variables, overridden by palmctl's, overridden by flags.
        let services = |name: &str| match name {
            "PALM__AMQP__URL" => Some("amqp://svc@h:1/v".to_owned()),
            "PALM__AMQP__PREFIX" => Some("palm-stg".to_owned()),
            _ => None,
        };
        let show = dlq("dlq show palmvalidator.jobs --limit 3 --json", &services);
        assert_eq!(show.amqp_url, "amqp://svc@h:1/v");
        assert!(show.json);
        assert_eq!(
            show.action,
            DlqAction::Show {
                dlq: "palm-stg.palmvalidator.jobs.dlq".into(),
                limit: 3
            }
        );
        let ours = |name: &str| match name {
            "PALMCTL_AMQP_PREFIX" => Some("mine".to_owned()),
            other => services(other),
        };
        assert_eq!(
            dlq("dlq list q", &ours).action,
            DlqAction::List {
                queues: vec!["mine.q".into()]
            }
        );
        let flagged = dlq(
            "dlq purge mine.q.dlq --amqp-prefix=mine --yes --amqp-url amqps://x/",
            &services,
        );
        assert_eq!(flagged.amqp_url, "amqps://x/");
        assert_eq!(
            flagged.action,
            DlqAction::Purge {
                dlq: "mine.q.dlq".into(),
                yes: true
            }
        );
        assert_eq!(
            dlq(
                "dlq replay q --filter job.* --dry-run --limit 2 --via-exchange",
                &no_env
            )
            .action,
            DlqAction::Replay {
                dlq: "palm.q.dlq".into(),
                selector: Selector::Matching("job.*".into()),
                limit: Some(2),
                dry_run: true,
                via_exchange: true,
            }
        );
        assert_eq!(
            dlq("dlq replay palm.q.dlq --id 0192", &no_env).action,
            DlqAction::Replay {
                dlq: "palm.q.dlq".into(),
                selector: Selector::Id("0192".into()),
                limit: None,
                dry_run: false,
                via_exchange: false,
            }
        );
    }

    #[test]
    fn bad_dlq_command_lines_say_what_is_wrong() {
        let error = |line: &str| parse(args(line), no_env).unwrap_err().0;
        assert!(error("dlq").starts_with("`dlq` needs a subcommand"));
        assert_eq!(error("dlq frob"), "unknown command `dlq frob`");
        assert_eq!(error("dlq show"), "`dlq show` takes one DLQ");
        assert!(error("dlq replay q").starts_with("`dlq replay` needs exactly one"));
        assert!(error("dlq replay q --all --id x").starts_with("`dlq replay` needs exactly one"));
        assert!(error("dlq replay q --id x --limit 2").starts_with("--limit does not apply"));
        assert!(error("dlq show q --limit 0").starts_with("--limit must be a positive"));
        assert_eq!(error("dlq show q --yes"), "--yes does not apply to `dlq`");
        assert_eq!(error("get /v1/me --json"), "--json does not apply to `get`");
        assert_eq!(error("dlq purge q --yes=1"), "--yes takes no value");
        assert!(error("dlq list --amqp-url http://x").starts_with("--amqp-url must be"));
        assert!(error("dlq list --amqp-prefix a/b").starts_with("--amqp-prefix must be"));
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        let error = |line: &str| parse(args(line), no_env).unwrap_err().0;
        assert_eq!(error(""), "no command given");
        assert_eq!(error("frobnicate"), "unknown command `frobnicate`");
        assert_eq!(error("get"), "wrong arguments for `get`");
        assert_eq!(error("get /v1/me --frob 1"), "unknown flag --frob");
        assert_eq!(error("get /v1/me --api"), "--api needs a value");
        assert_eq!(error("login --seed a --seed b"), "--seed given twice");
        assert_eq!(
            error("login --seed a --key 0x01"),
            "give --key or --seed, not both"
        );
        assert!(error("login").starts_with("`login` needs a key"));
        assert!(error("vote p 1").starts_with("`vote` needs a key"));
        assert!(error("vote p 1 --seed a").starts_with("`vote` needs a session"));
        assert!(error("address --key 0x1234").contains("64 hex digits"));
        assert!(error("patch /v1/me {handle}").starts_with("the body is not JSON"));
        assert_eq!(
            error("get /v1/me --with-seed x"),
            "--with-seed does not apply to `get`"
        );
        assert!(error("get /v1/me --api ftp://x").starts_with("--api must be an http"));
    }
}
