//! Message header names Palm sets, and W3C trace-context propagation through
//! AMQP headers (`traceparent`, `tracestate`).

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Number of failed attempts so far; set on a retried copy.
pub const ATTEMPT: &str = "x-palm-attempt";
/// Why the consumer dead-lettered the message.
pub const DEAD_LETTER_REASON: &str = "x-palm-dead-letter-reason";
/// Queue the message was dead-lettered from.
pub const DEAD_LETTER_QUEUE: &str = "x-palm-dead-letter-queue";
/// Routing key the message was first published with.
pub const ORIGINAL_ROUTING_KEY: &str = "x-palm-original-routing-key";
/// Set by quorum queues on redelivery: how often the broker delivered it.
pub const BROKER_DELIVERY_COUNT: &str = "x-delivery-count";

/// Reads an integer header whatever integer width the sender used.
pub fn get_u32(headers: &FieldTable, name: &str) -> Option<u32> {
    match headers.inner().get(name)? {
        AMQPValue::ShortShortInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u32::from(*v)),
        AMQPValue::ShortInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u32::from(*v)),
        AMQPValue::LongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(*v),
        AMQPValue::LongLongInt(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

/// Reads a string header.
pub fn get_str(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        AMQPValue::ShortString(v) => Some(v.as_str().to_owned()),
        _ => None,
    }
}

/// Sets a string header.
pub fn set_str(headers: &mut FieldTable, name: &str, value: &str) {
    headers.insert(
        ShortString::from(name),
        AMQPValue::LongString(LongString::from(value)),
    );
}

struct HeaderInjector<'a>(&'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        set_str(self.0, key, &value);
    }
}

struct HeaderExtractor<'a>(&'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(v) => std::str::from_utf8(v.as_bytes()).ok(),
            AMQPValue::ShortString(v) => Some(v.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(ShortString::as_str).collect()
    }
}

/// Writes the current span's trace context into `headers`.
pub fn inject_trace_context(headers: &mut FieldTable) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Makes `span` a child of the trace context carried in `headers`, if any.
pub fn adopt_trace_context(span: &tracing::Span, headers: &FieldTable) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // Without a parent in the headers the span simply starts a new trace.
    let _ = span.set_parent(parent);
}

/// Hex trace id of `span`, for log lines.
pub fn trace_id(span: &tracing::Span) -> String {
    use opentelemetry::trace::TraceContextExt;
    span.context().span().span_context().trace_id().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_headers_of_any_width() {
        let mut headers = FieldTable::default();
        headers.insert("a".into(), AMQPValue::LongLongInt(3));
        headers.insert("b".into(), AMQPValue::ShortShortUInt(4));
        headers.insert("c".into(), AMQPValue::LongLongInt(-1));
        assert_eq!(get_u32(&headers, "a"), Some(3));
        assert_eq!(get_u32(&headers, "b"), Some(4));
        assert_eq!(get_u32(&headers, "c"), None);
        assert_eq!(get_u32(&headers, "missing"), None);
    }
}
