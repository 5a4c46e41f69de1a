//! `palmctl dlq …`: the operator's view of the dead-letter queues, over
//! [`palm_amqp::dlq`] (which explains why reading never consumes).
//!
//! Results go to stdout (text, or JSON with `--json`); every action, done,
//! refused or failed, writes exactly one JSON audit line to stderr: when,
//! who, which broker (without credentials), which DLQ, the outcome and the
//! message ids involved, never a body.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use palm_amqp::dlq::{
    DeadLetter, Dlq, DlqStatus, ReplayOutcome, ReplayRequest, ReplayTarget, Selector,
};
use serde_json::{Map, Value, json};

use crate::args::{DlqAction, DlqCommand};
use crate::out;

/// Characters of a body `show` prints.
const BODY_PREVIEW_CHARS: usize = 200;
/// Message ids an audit line names at most.
const AUDIT_IDS: usize = 100;
/// Longest wait for the broker connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs one `dlq` subcommand and writes its audit line.
pub(crate) async fn run(command: DlqCommand) -> anyhow::Result<()> {
    let mut audit = Audit::new(&command);
    let result = act(&command, &mut audit).await;
    audit.emit(&result);
    result
}

async fn act(command: &DlqCommand, audit: &mut Audit) -> anyhow::Result<()> {
    let broker = redact(&command.amqp_url);
    let dlq = tokio::time::timeout(CONNECT_TIMEOUT, Dlq::connect(&command.amqp_url))
        .await
        .map_err(|_| {
            anyhow::anyhow!("no answer from RabbitMQ at {broker} within {CONNECT_TIMEOUT:?}")
        })?
        .with_context(|| format!("cannot connect to RabbitMQ at {broker}"))?;
    let result = match &command.action {
        DlqAction::List { queues } => list(&dlq, queues, command.json, audit).await,
        DlqAction::Show { dlq: name, limit } => show(&dlq, name, *limit, command.json, audit).await,
        DlqAction::Replay {
            dlq: name,
            selector,
            limit,
            dry_run,
            via_exchange,
        } => {
            let request = ReplayRequest {
                selector: selector.clone(),
                target: if *via_exchange {
                    ReplayTarget::Exchange(format!("{}.events", command.prefix))
                } else {
                    ReplayTarget::OriginQueue
                },
                limit: *limit,
                dry_run: *dry_run,
            };
            replay(&dlq, name, &request, command.json, audit).await
        }
        DlqAction::Purge { dlq: name, yes } => purge(&dlq, name, *yes, command.json, audit).await,
    };
    dlq.close().await;
    result
}

async fn list(dlq: &Dlq, queues: &[String], json: bool, audit: &mut Audit) -> anyhow::Result<()> {
    let mut statuses = Vec::new();
    for queue in queues {
        statuses.push(dlq.status(&format!("{queue}.dlq")).await?);
    }
    let total: u64 = statuses.iter().filter_map(|s| s.depth).map(u64::from).sum();
    audit.field("dlqs", statuses.len());
    audit.field("dead_letters", total);
    if json {
        let dlqs: Vec<Value> = statuses.iter().map(status_json).collect();
        return out(&serde_json::to_string_pretty(&json!({ "dlqs": dlqs }))?);
    }
    let width = statuses
        .iter()
        .map(|s| s.dlq.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut text = format!("{:<width$}  {:>7}  ORIGIN (depth)\n", "DLQ", "DEPTH");
    for status in &statuses {
        text.push_str(&format!(
            "{:<width$}  {:>7}  {} ({})\n",
            status.dlq,
            depth_text(status.depth),
            status.origin,
            depth_text(status.origin_depth),
        ));
    }
    text.push_str(&format!("{total} dead letters"));
    out(&text)
}

fn depth_text(depth: Option<u32>) -> String {
    depth.map_or_else(|| "absent".to_owned(), |d| d.to_string())
}

fn status_json(status: &DlqStatus) -> Value {
    json!({
        "dlq": status.dlq,
        "origin": status.origin,
        "depth": status.depth,
        "origin_depth": status.origin_depth,
    })
}

async fn show(
    dlq: &Dlq,
    name: &str,
    limit: usize,
    json: bool,
    audit: &mut Audit,
) -> anyhow::Result<()> {
    let browse = dlq.browse(name, limit).await?;
    audit.field("depth", browse.depth);
    audit.ids(&browse.messages);
    let origin = palm_amqp::dlq::origin_of(name).unwrap_or_default();
    if json {
        let messages: Vec<Value> = browse.messages.iter().map(message_json).collect();
        return out(&serde_json::to_string_pretty(&json!({
            "dlq": name,
            "origin": origin,
            "depth": browse.depth,
            "messages": messages,
        }))?);
    }
    let mut text = format!(
        "{name}: {} messages (origin {origin}); showing {}\n",
        browse.depth,
        browse.messages.len()
    );
    for message in &browse.messages {
        text.push('\n');
        text.push_str(&message_text(message));
    }
    out(text.trim_end())
}

fn time_text(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
        .map_or_else(
            || secs.to_string(),
            |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
}

fn message_json(message: &DeadLetter) -> Value {
    let deaths: Vec<Value> = message
        .deaths
        .iter()
        .map(|death| {
            json!({
                "queue": death.queue,
                "reason": death.reason,
                "count": death.count,
                "exchange": death.exchange,
                "routing_keys": death.routing_keys,
                "time": death.time.map(time_text),
            })
        })
        .collect();
    json!({
        "position": message.position,
        "message_id": message.message_id,
        "type": message.kind,
        "routing_key": message.routing_key,
        "reason": message.reason,
        "dead_lettered_by": if message.by_consumer { "consumer" } else { "broker" },
        "first_death_at": message.first_death_time().map(time_text),
        "deaths": deaths,
        "redelivered": message.redelivered,
        "delivery_count": message.delivery_count,
        "headers": message.headers_json(),
        "body_bytes": message.body.len(),
        "body_preview": message.body_preview(BODY_PREVIEW_CHARS),
    })
}

fn message_text(message: &DeadLetter) -> String {
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    let mut text = format!(
        "[{}] message-id {}  type {}  routing-key {}\n",
        message.position,
        or_dash(&message.message_id),
        or_dash(&message.kind),
        or_dash(&message.routing_key),
    );
    text.push_str(&format!("    reason       {}\n", message.reason));
    let by = if message.by_consumer {
        "the consumer (it records no time)"
    } else {
        "the broker"
    };
    text.push_str(&format!("    dead-lettered by {by}\n"));
    if let Some(first) = message.first_death_time() {
        text.push_str(&format!("    first death  {}\n", time_text(first)));
    }
    for death in &message.deaths {
        text.push_str(&format!(
            "    x-death      {} in {} ×{}{}, published to `{}` with {}\n",
            death.reason,
            death.queue,
            death.count,
            death
                .time
                .map(|t| format!(" since {}", time_text(t)))
                .unwrap_or_default(),
            death.exchange,
            death.routing_keys.join(", "),
        ));
    }
    text.push_str(&format!("    headers      {}\n", message.headers_json()));
    text.push_str(&format!(
        "    body ({} bytes) {}\n",
        message.body.len(),
        message.body_preview(BODY_PREVIEW_CHARS)
    ));
    text
}

async fn replay(
    dlq: &Dlq,
    name: &str,
    request: &ReplayRequest,
    json: bool,
    audit: &mut Audit,
) -> anyhow::Result<()> {
    audit.field("dry_run", request.dry_run);
    audit.field(
        "selector",
        match &request.selector {
            Selector::All => "all".to_owned(),
            Selector::Id(id) => format!("id={id}"),
            Selector::Matching(glob) => format!("filter={glob}"),
        },
    );
    let target = match &request.target {
        ReplayTarget::OriginQueue => {
            format!(
                "queue {}",
                palm_amqp::dlq::origin_of(name).unwrap_or_default()
            )
        }
        ReplayTarget::Exchange(exchange) => format!("exchange {exchange}"),
    };
    audit.field("destination", target.as_str());
    let outcome: ReplayOutcome = dlq.replay(name, request).await?;
    audit.field("run", outcome.run.as_str());
    audit.field("depth", outcome.depth);
    audit.field(
        if request.dry_run {
            "would_replay"
        } else {
            "replayed"
        },
        outcome.selected.len(),
    );
    audit.ids(&outcome.selected);
    if let Selector::Id(id) = &request.selector
        && outcome.selected.is_empty()
    {
        bail!("no message with id `{id}` in {name}; nothing replayed");
    }
    if json {
        let selected: Vec<Value> = outcome
            .selected
            .iter()
            .map(|m| {
                json!({
                    "position": m.position,
                    "message_id": m.message_id,
                    "routing_key": m.routing_key,
                    "reason": m.reason,
                })
            })
            .collect();
        return out(&serde_json::to_string_pretty(&json!({
            "dlq": name,
            "target": target,
            "dry_run": request.dry_run,
            "run": outcome.run,
            "depth": outcome.depth,
            "selected": selected,
            "without_routing_key": outcome.without_routing_key,
        }))?);
    }
    let verb = if request.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    let mut text = format!(
        "{verb} {} of {} messages from {name} to {target}",
        outcome.selected.len(),
        outcome.depth
    );
    if request.dry_run {
        text.push_str(" (dry run: nothing changed)");
    } else {
        text.push_str(&format!(" (run {})", outcome.run));
    }
    for message in &outcome.selected {
        text.push_str(&format!(
            "\n  [{}] {}  {}  {}",
            message.position,
            message.message_id.as_deref().unwrap_or("-"),
            message.routing_key.as_deref().unwrap_or("-"),
            message.reason
        ));
    }
    if outcome.without_routing_key > 0 {
        text.push_str(&format!(
            "\n{} selected messages have no routing key and stayed in the DLQ",
            outcome.without_routing_key
        ));
    }
    out(&text)
}

async fn purge(
    dlq: &Dlq,
    name: &str,
    yes: bool,
    json: bool,
    audit: &mut Audit,
) -> anyhow::Result<()> {
    let depth = dlq
        .depth(name)
        .await?
        .with_context(|| format!("queue `{name}` does not exist"))?;
    audit.field("depth", depth);
    audit.field("confirmed_by", if yes { "--yes" } else { "typed name" });
    if !yes {
        eprint!(
            "{name} holds {depth} messages; purging deletes them for good.\n\
             Type the queue name to purge it: "
        );
        // A blocking read on the blocking pool: the runtime keeps serving
        // the connection (heartbeats) while the operator types.
        let answer = tokio::task::spawn_blocking(|| {
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).map(|_| answer)
        })
        .await
        .context("reading the confirmation")?
        .context("reading the confirmation")?;
        if !answer.ends_with('\n') || !std::io::stdin().is_terminal() {
            // No echoed Enter (end of input, or piped): end the prompt's line.
            eprintln!();
        }
        if answer.trim() != name {
            audit.refused();
            bail!("purge not confirmed (expected `{name}`); nothing deleted");
        }
    }
    let purged = dlq.purge(name).await?;
    audit.field("purged", purged);
    if json {
        return out(&serde_json::to_string_pretty(
            &json!({ "dlq": name, "purged": purged }),
        )?);
    }
    out(&format!("purged {purged} messages from {name}"))
}

/// The audit line of one action.
struct Audit {
    fields: Map<String, Value>,
    refused: bool,
}

impl Audit {
    fn new(command: &DlqCommand) -> Self {
        let (action, dlq) = match &command.action {
            DlqAction::List { .. } => ("list", None),
            DlqAction::Show { dlq, .. } => ("show", Some(dlq)),
            DlqAction::Replay { dlq, .. } => ("replay", Some(dlq)),
            DlqAction::Purge { dlq, .. } => ("purge", Some(dlq)),
        };
        let mut fields = Map::new();
        fields.insert("action".into(), json!(format!("dlq.{action}")));
        fields.insert("operator".into(), json!(operator()));
        fields.insert("broker".into(), json!(redact(&command.amqp_url)));
        if let Some(dlq) = dlq {
            fields.insert("dlq".into(), json!(dlq));
        }
        Self {
            fields,
            refused: false,
        }
    }

    fn field(&mut self, name: &str, value: impl Into<Value>) {
        self.fields.insert(name.into(), value.into());
    }

    fn ids(&mut self, messages: &[DeadLetter]) {
        let ids: Vec<&str> = messages
            .iter()
            .take(AUDIT_IDS)
            .map(|m| m.message_id.as_deref().unwrap_or(""))
            .collect();
        self.field("message_ids", ids);
        if messages.len() > AUDIT_IDS {
            self.field("message_ids_truncated", true);
        }
    }

    fn refused(&mut self) {
        self.refused = true;
    }

    /// Writes the line: level, outcome and, on failure, the error.
    fn emit(mut self, result: &anyhow::Result<()>) {
        let (level, outcome) = match result {
            Ok(()) => ("INFO", "done"),
            Err(_) if self.refused => ("WARN", "refused"),
            Err(_) => ("ERROR", "failed"),
        };
        if let Err(error) = result {
            self.field("error", format!("{error:#}"));
        }
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            json!(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        line.insert("level".into(), json!(level));
        line.insert("target".into(), json!("palmctl::dlq"));
        line.insert("outcome".into(), json!(outcome));
        line.append(&mut self.fields);
        eprintln!("{}", Value::Object(line));
    }
}

/// Who ran it: `$USER@host` (`PALMCTL_OPERATOR` overrides, for a CI job or a
/// shared jump host).
fn operator() -> String {
    if let Some(name) = std::env::var("PALMCTL_OPERATOR")
        .ok()
        .filter(|v| !v.is_empty())
    {
        return name;
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

/// The URL without its user and password.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable url>".into();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqps://u:p@ss@h/v"), "amqps://h/v");
        assert_eq!(redact("amqp://h:5672"), "amqp://h:5672");
        assert_eq!(redact("nonsense"), "<unparsable url>");
    }
}
