//! `--log-format json`: one JSON object per line, for log collectors (Loki, Elasticsearch,
//! Cloud Logging): `timestamp`, `level`, `target`, `message`, the event's fields under
//! `fields`, the innermost span's name, and, when traces are exported, the OpenTelemetry
//! `trace_id` and `span_id` of the span the event happened in, so a log line leads to its
//! trace.

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::{Event, Subscriber, field::Field};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer, time::FormatTime},
    registry::LookupSpan,
};

/// The event formatter.
pub struct JsonLines;

/// An event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}").into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        let mut line = Map::new();
        let mut ts = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut ts))?;
        line.insert("timestamp".into(), ts.into());
        let meta = event.metadata();
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(m) = fields.remove("message") {
            line.insert("message".into(), m);
        }
        if !fields.is_empty() {
            line.insert("fields".into(), Value::Object(fields));
        }
        if let Some(span) = ctx.lookup_current() {
            line.insert("span".into(), span.name().into());
            // The span's own fields (rpc.method, phone.id, ...), as the text format shows
            // them.
            if let Some(f) = span
                .extensions()
                .get::<tracing_subscriber::fmt::FormattedFields<N>>()
                .filter(|f| !f.is_empty())
            {
                line.insert("span_fields".into(), f.fields.as_str().into());
            }
        }
        // Asked of the span the event is in even when this layer's filter hides it (the
        // edge's SIP transaction spans are debug, exported at any log level): only a span
        // the OpenTelemetry layer follows has ids (traces exported).
        let cx = tracing::Span::current().context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            line.insert("trace_id".into(), sc.trace_id().to_string().into());
            line.insert("span_id".into(), sc.span_id().to_string().into());
        }
        writeln!(
            writer,
            "{}",
            serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?
        )
    }
}
