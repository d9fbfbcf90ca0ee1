//! A join's `postgres_changes` element (PROTOCOL 6.1): which changes it
//! wants, and the exact texts of everything that can go wrong subscribing.
//!
//! Parsing mirrors the Elixir server's `parse_subscription_params`: the
//! event is upper-cased (anything else means `*`); `schema`+`table`
//! (+`filter` string), `schema`+`table`, `schema` alone (table `*`) or
//! `table` alone (schema `public`); any other shape, including `filter:
//! null`, is an error that quotes the whole element with Elixir's
//! `inspect`. Errors reach the client as a `postgres_changes` system
//! message with `status: "error"`; the Elixir server then subscribes none of
//! the channel's bindings and does not retry.

use serde_json::{Map, Value};

use super::change::{Change, ChangeKind};
use super::eval::Tri;
use super::filter::{parse_filters, Filter, FilterError};
use super::inspect::{inspect, inspect_pretty, Term};

/// Which change types a binding wants (`realtime.subscription.action_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventFilter {
    /// `*`: every type.
    All,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl EventFilter {
    /// From the element's `event`: a string upper-cased to one of the three
    /// types, anything else (absent, `*`, other text, non-strings) is `*`.
    pub fn from_param(v: Option<&Value>) -> EventFilter {
        match v.and_then(Value::as_str).map(str::to_uppercase).as_deref() {
            Some("INSERT") => EventFilter::Insert,
            Some("UPDATE") => EventFilter::Update,
            Some("DELETE") => EventFilter::Delete,
            _ => EventFilter::All,
        }
    }

    /// `*`, `INSERT`, `UPDATE` or `DELETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventFilter::All => "*",
            EventFilter::Insert => "INSERT",
            EventFilter::Update => "UPDATE",
            EventFilter::Delete => "DELETE",
        }
    }

    /// Whether changes of `kind` are wanted.
    pub fn matches(self, kind: ChangeKind) -> bool {
        matches!(
            (self, kind),
            (EventFilter::All, _)
                | (EventFilter::Insert, ChangeKind::Insert)
                | (EventFilter::Update, ChangeKind::Update)
                | (EventFilter::Delete, ChangeKind::Delete)
        )
    }
}

/// One parsed `postgres_changes` binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The id echoed in the join reply and listed in `ids` of deliveries.
    pub id: u64,
    /// Change types wanted.
    pub event: EventFilter,
    /// Schema name; `*` matches any (and `%`/`_` are SQL LIKE wildcards).
    pub schema: String,
    /// Table name; `*` matches any (and `%`/`_` are SQL LIKE wildcards).
    pub table: String,
    /// Conditions, all of which must hold.
    pub filters: Vec<Filter>,
    /// `select`: the columns to deliver (plus the primary key); `None` for all.
    pub select: Option<Vec<String>>,
}

/// Why a binding was rejected before reaching the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// Not one of the four accepted shapes. Holds the inspected element,
    /// or `None` when it carries a `user_token`/`auth_token` (redacted).
    #[error("no subscription params")]
    NoParams(Option<String>),
    /// The `filter` string did not parse.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// `select` is a string instead of a list.
    #[error("select is not a list")]
    SelectNotList,
    /// `select` with `*` as schema or table.
    #[error("select on a wildcard subscription")]
    SelectOnWildcard,
}

impl BindingError {
    /// The exact `postgres_changes` system error text.
    pub fn message(&self) -> String {
        match self {
            BindingError::NoParams(inspected) => format!(
                "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: {}",
                inspected.as_deref().unwrap_or("<redacted>")
            ),
            BindingError::Filter(e) => e.message(),
            BindingError::SelectNotList => "Error parsing `select` params: expected a list of column name strings, e.g. select: [\"col1\", \"col2\"]".to_owned(),
            BindingError::SelectOnWildcard => "Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name.".to_owned(),
        }
    }
}

/// Parses one `postgres_changes` element of a join's `config`.
pub fn parse_binding(raw: &Map<String, Value>, id: u64) -> Result<Binding, BindingError> {
    let event = EventFilter::from_param(raw.get("event"));
    let select = match raw.get("select") {
        Some(Value::Array(items)) => {
            let cols: Vec<String> = items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            (!cols.is_empty()).then_some(cols)
        }
        Some(Value::String(_)) => return Err(BindingError::SelectNotList),
        _ => None,
    };
    let text = |k: &str| raw.get(k).and_then(Value::as_str);
    let has = |k: &str| raw.contains_key(k);
    let (schema, table, filters) = match (text("schema"), text("table"), text("filter")) {
        (Some(s), Some(t), Some(f)) => (s, t, parse_filters(f)?),
        (Some(s), Some(t), _) if !has("filter") => (s, t, Vec::new()),
        (Some(s), None, _) if !has("table") && !has("filter") => (s, "*", Vec::new()),
        (None, Some(t), _) if !has("schema") && !has("filter") => ("public", t, Vec::new()),
        _ if has("user_token") || has("auth_token") => return Err(BindingError::NoParams(None)),
        _ => {
            let inspected = inspect(&Term::from_json(&Value::Object(raw.clone())));
            return Err(BindingError::NoParams(Some(inspected)));
        }
    };
    if select.is_some() && (schema == "*" || table == "*") {
        return Err(BindingError::SelectOnWildcard);
    }
    Ok(Binding {
        id,
        event,
        schema: schema.to_owned(),
        table: table.to_owned(),
        filters,
        select,
    })
}

/// The binding a legacy join (no `config`) makes of its sub-topic
/// `schema[:table[:filter]]` (`public:todos:id=eq.1`), ready for
/// [`parse_binding`].
pub fn legacy_params(sub_topic: &str) -> Map<String, Value> {
    let mut parts = sub_topic.splitn(3, ':');
    let mut m = Map::new();
    for key in ["schema", "table", "filter"] {
        if let Some(p) = parts.next() {
            m.insert(key.to_owned(), Value::String(p.to_owned()));
        }
    }
    m
}

/// Why the database refused a subscription (both kinds are final: the
/// Elixir server does not retry them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    /// No table of the publication matches the binding's schema and table.
    NotEnabled,
    /// The subscription checks raised; holds the error as the Elixir
    /// server's driver renders it ([`PgErrorText`]).
    Exception(String),
}

impl Binding {
    /// Whether the table `schema.table` is one this binding names: each
    /// name is matched with SQL `LIKE` (no escape character), `*` standing
    /// for `%`.
    pub fn matches_relation(&self, schema: &str, table: &str) -> bool {
        like_or_any(&self.schema, schema) && like_or_any(&self.table, table)
    }

    /// The verdict on a change: its type and table must match and every
    /// filter must pass (see [`Filter::eval`]).
    pub fn eval(&self, change: &Change<'_>) -> Tri {
        if !self.event.matches(change.kind)
            || !self.matches_relation(&change.rel.schema, &change.rel.name)
        {
            return Tri::False;
        }
        if self.filters.is_empty() {
            return Tri::True;
        }
        let image = change.filter_image();
        self.filters.iter().fold(Tri::True, |acc, f| {
            if acc == Tri::False {
                return acc;
            }
            acc.and(f.eval(change.value_in(&image, &f.column).as_ref()))
        })
    }

    /// The binding as the Elixir server lists it in subscription errors:
    /// `event: *, schema: public, table: todos, filters: [...], select: nil`
    /// (lists pretty-printed by `inspect`, 80 columns).
    pub fn params_to_log(&self) -> String {
        let filters = Term::List(self.filters.iter().map(Filter::to_term).collect());
        let select = match &self.select {
            None => Term::Nil,
            Some(cols) => Term::List(cols.iter().map(|c| Term::str(c)).collect()),
        };
        format!(
            "event: {}, schema: {}, table: {}, filters: {}, select: {}",
            self.event.as_str(),
            self.schema,
            self.table,
            inspect_pretty(&filters),
            inspect_pretty(&select)
        )
    }

    /// The exact system error text for a subscription the database refused.
    pub fn subscribe_error_message(&self, e: &SubscribeError) -> String {
        match e {
            SubscribeError::NotEnabled => format!(
                "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [{}]",
                self.params_to_log()
            ),
            SubscribeError::Exception(exception) => format!(
                "Unable to subscribe to changes with given parameters. An exception happened so please check your connect parameters: [{}]. Exception: {exception}",
                self.params_to_log()
            ),
        }
    }
}

fn like_or_any(pattern: &str, s: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    // The common case, a plain name: no pattern characters.
    if !pattern.contains(['%', '_']) {
        return pattern == s;
    }
    like(pattern, s)
}

/// SQL `LIKE` without an escape character: `%` any run, `_` any one
/// character, everything else literal and case-sensitive. Walks both
/// strings in place (byte offsets on character boundaries): this runs per
/// binding for every relation of every batch, so it must not allocate.
fn like(p: &str, s: &str) -> bool {
    // Iterative matching with backtracking to the last `%`: `star` holds
    // the pattern offset just after it and the string offset it resumes at.
    let (pb, sb) = (p.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < sb.len() {
        let sc = s[si..].chars().next().map_or(1, char::len_utf8);
        let step = match pb.get(pi) {
            Some(b'%') => {
                star = Some((pi + 1, si));
                pi += 1;
                continue;
            }
            Some(b'_') => Some(1),
            Some(_) => {
                let pc = p[pi..].chars().next().map_or(1, char::len_utf8);
                (p[pi..pi + pc] == s[si..si + sc]).then_some(pc)
            }
            None => None,
        };
        match (step, star) {
            (Some(pc), _) => {
                pi += pc;
                si += sc;
            }
            (None, Some((sp, ss))) => {
                let skip = s[ss..].chars().next().map_or(1, char::len_utf8);
                pi = sp;
                si = ss + skip;
                star = Some((sp, ss + skip));
            }
            (None, None) => return false,
        }
    }
    pb[pi..].iter().all(|&c| c == b'%')
}

/// A PostgreSQL error rendered as Postgrex's `Exception.message/1` does
/// (the text after `Exception: ` in [`SubscribeError::Exception`]):
/// `ERROR P0001 (raise_exception) <message>`, then `table`, `column`,
/// `constraint` and `hint` lines when present, then the detail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgErrorText<'a> {
    /// Severity (`S` field), e.g. `ERROR`.
    pub severity: &'a str,
    /// SQLSTATE (`C` field).
    pub code: &'a str,
    /// Primary message (`M` field).
    pub message: &'a str,
    /// `t` field.
    pub table: Option<&'a str>,
    /// `c` field.
    pub column: Option<&'a str>,
    /// `n` field.
    pub constraint: Option<&'a str>,
    /// `H` field.
    pub hint: Option<&'a str>,
    /// `D` field.
    pub detail: Option<&'a str>,
}

impl<'a> PgErrorText<'a> {
    /// An error raised by PL/pgSQL `RAISE EXCEPTION '<message>'`, as the
    /// subscription checks raise theirs.
    pub fn raise_exception(message: &'a str) -> PgErrorText<'a> {
        PgErrorText {
            severity: "ERROR",
            code: "P0001",
            message,
            ..PgErrorText::default()
        }
    }

    /// The rendered text. An unknown SQLSTATE's condition prints as `nil`.
    pub fn render(&self) -> String {
        let name = super::errcodes::condition_name(self.code).unwrap_or("nil");
        let mut s = format!("{} {} ({name}) {}", self.severity, self.code, self.message);
        let meta = [
            ("table", self.table),
            ("column", self.column),
            ("constraint", self.constraint),
            ("hint", self.hint),
        ];
        if meta.iter().any(|(_, v)| v.is_some()) {
            s.push('\n');
            for (k, v) in meta {
                if let Some(v) = v {
                    s.push_str(&format!("\n    {k}: {v}"));
                }
            }
        }
        if let Some(d) = self.detail {
            s.push_str("\n\n");
            s.push_str(d);
        }
        s
    }
}

#[cfg(test)]
#[path = "binding_tests.rs"]
mod tests;
