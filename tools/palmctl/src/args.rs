//! The command line, parsed by hand: flags (`--name value` or
//! `--name=value`) may come anywhere, the rest are the command and its
//! arguments. Every flag has an environment variable behind it, so a shell
//! session can `export` the key, token and server once.

use std::collections::BTreeMap;
use std::fmt;

use palm_core::eth::{Address, LocalKey, keccak256};
use serde_json::Value;

/// The help text (`--help`, and after a usage error).
pub(crate) const USAGE: &str = "\
palmctl: a development client for Palm's public API (palmdao). It signs
Sign-In with Ethereum messages and EIP-712 votes with a local key, so the API
can be used without a browser wallet. Development keys only: never pass the
key of a wallet that holds anything.

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

Flags, each with its environment variable and default:
  --api URL       PALMCTL_API       http://127.0.0.1:8080
  --key 0xHEX     PALMCTL_KEY       a 32-byte private key
  --seed WORD     PALMCTL_SEED      a development key: keccak256(WORD)
  --token TOKEN   PALMCTL_TOKEN     the session token `login` printed
  --domain HOST   PALMCTL_DOMAIN    localhost:8080 (palmdao's auth.domain)
  --uri URI       PALMCTL_URI       http://DOMAIN/v1/auth/siwe (auth.uri)
  --chain-id N    PALMCTL_CHAIN_ID  1
  -h, --help      this text

Sign-ins name DOMAIN, URI and the chain id, which must match palmdao's
auth.domain, auth.uri and auth.chain_ids; votes are signed for the app
DOMAIN on the chain id. CHOICE is JSON as the proposal's voting type wants
it, counting choices from 1: 2 (single-choice), [1,3] (approval),
{\"1\":2,\"3\":1} (weighted).

Exit status: 0 done; 1 the call failed (the problem document goes to
stderr); 2 bad usage.

Example:
  export PALMCTL_SEED=alice
  export PALMCTL_TOKEN=$(palmctl login)
  palmctl get /v1/me
";

/// Flags that take a value; `--help` is handled apart.
const FLAGS: [&str; 10] = [
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
}

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
    let command = command(&positionals, &mut flags, &options)?;
    if let Some(name) = ["with-key", "with-seed", "voter"]
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
                (Some(text), _) => text
                    .parse()
                    .map_err(|e| usage(format!("--voter: {e}: {text}")))?,
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
            matches!(parsed.command, Command::TypedData { voter: v, .. } if v.to_checksummed() == voter)
        );
        assert!(parse(args("--help anything"), no_env).is_ok_and(|p| p.is_none()));
        assert!(parse(args("help"), no_env).is_ok_and(|p| p.is_none()));
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
