//! The subscription checker: a task per tenant database, on the tenant's
//! home shard, with its own SQL connection. It verifies each new (or
//! re-authorised) Postgres Changes subscription against the catalog, as the
//! Elixir server's `realtime.subscription` insert and its
//! `subscription_check_filters` trigger do, in the same order and with the
//! same texts:
//!
//! 1. a binding must match at least one table of the publication, else
//!    `... Please check Realtime is enabled for the given connect
//!    parameters: [...]`;
//! 2. for every matching table, under the subscriber's role: the role must
//!    exist, each filter's column must be one the role may select, its value
//!    must cast to the column type (`in`: at most 100 elements; `is`: a
//!    keyword, non-null ones on boolean columns only; `like`/`ilike` and
//!    `match`/`imatch`: a type with the operator, and a valid regex), and
//!    each `select` column must be selectable. A failure becomes
//!    `... An exception happened ...: [...]. Exception: <error>`.
//!
//! The checks read the catalog only: nothing is written to the tenant
//! database.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use super::settings::ReplicationSettings;
use crate::proto::pg::sql::literal;
use crate::realtime::cdc::CheckJob;
use crate::realtime::postgres_changes::binding::{Binding, PgErrorText, SubscribeError};
use crate::realtime::postgres_changes::filter::{trigger, Op};
use crate::server::pgconn::{PgConn, PgError};
use crate::server::shard::{with_tenant, ShardState};

/// Runs the checker for `tenant` until the shard stops.
pub async fn run(state: Rc<ShardState>, tenant: String, settings: ReplicationSettings) {
    let (tx, rx) = glommio::channels::local_channel::new_bounded::<()>(1);
    with_tenant(&state, &tenant, |t| {
        t.cdc.set_waker(Box::new(move || {
            // Full means a wake-up is already pending.
            let _ = tx.try_send(());
        }))
    });
    let mut conn: Option<PgConn> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(job) = with_tenant(&state, &tenant, |t| t.cdc.next_check()).flatten() else {
            if rx.recv().await.is_none() {
                return;
            }
            continue;
        };
        if conn.is_none() {
            match PgConn::connect(&settings.sql).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e, "subscription checker cannot connect");
                    with_tenant(&state, &tenant, |t| t.cdc.retry_check(&job));
                    glommio::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        match check(c, &settings.publication, &job).await {
            Ok(verdict) => {
                backoff = Duration::from_millis(100);
                if let Err(e) = &verdict {
                    tracing::info!(tenant = %tenant, error = %e, "subscription refused");
                }
                with_tenant(&state, &tenant, |t| t.cdc.finish_check(&job, verdict));
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "subscription check interrupted");
                conn = None;
                with_tenant(&state, &tenant, |t| t.cdc.retry_check(&job));
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A published table.
struct Published {
    schema: String,
    table: String,
    oid: String,
}

/// Checks every binding of `job`. `Ok(Err(text))` is a refusal (the exact
/// system error); `Err` is connection trouble (retry).
pub async fn check(
    sql: &mut PgConn,
    publication: &str,
    job: &CheckJob,
) -> Result<Result<(), String>, PgError> {
    let q = format!(
        "SELECT schemaname, tablename, format('%I.%I', schemaname, tablename)::regclass::oid \
         FROM pg_publication_tables WHERE pubname = {} ORDER BY 1, 2",
        super::catalog::literal(publication)?
    );
    let rows = sql.simple_query(&q).await?;
    let published: Vec<Published> = rows
        .first()
        .map(|r| {
            r.rows
                .iter()
                .map(|row| Published {
                    schema: row[0].clone().unwrap_or_default(),
                    table: row[1].clone().unwrap_or_default(),
                    oid: row[2].clone().unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    for b in &job.bindings {
        let entities: Vec<&Published> = published
            .iter()
            .filter(|p| b.matches_relation(&p.schema, &p.table))
            .collect();
        if entities.is_empty() {
            return Ok(Err(b.subscribe_error_message(&SubscribeError::NotEnabled)));
        }
        for e in entities {
            match check_entity(sql, b, &e.oid, &job.claims.role).await? {
                Ok(()) => {}
                Err(exception) => {
                    return Ok(Err(
                        b.subscribe_error_message(&SubscribeError::Exception(exception))
                    ))
                }
            }
        }
    }
    Ok(Ok(()))
}

/// Renders a database error as the Elixir server reports it.
fn render(e: &PgError) -> String {
    match e {
        PgError::Db {
            severity,
            code,
            message,
        } => PgErrorText {
            severity,
            code,
            message,
            ..PgErrorText::default()
        }
        .render(),
        other => other.to_string(),
    }
}

/// A value with a NUL byte, refused with the error Postgres gives for one.
fn nul_refused() -> String {
    PgErrorText {
        severity: "ERROR",
        code: "22021",
        message: "invalid byte sequence for encoding \"UTF8\": 0x00",
        ..PgErrorText::default()
    }
    .render()
}

fn raised(message: &str) -> String {
    PgErrorText::raise_exception(message).render()
}

/// Runs a one-value query; a database error is `Ok(Err(rendered))`.
async fn value(sql: &mut PgConn, q: &str) -> Result<Result<Option<String>, PgError>, PgError> {
    match sql.simple_query(q).await {
        Ok(r) => Ok(Ok(r
            .first()
            .and_then(|r| r.rows.first())
            .and_then(|row| row.first().cloned().flatten()))),
        Err(e @ PgError::Db { .. }) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// The trigger's checks of one binding on one table, as `role`.
async fn check_entity(
    sql: &mut PgConn,
    b: &Binding,
    oid: &str,
    role: &str,
) -> Result<Result<(), String>, PgError> {
    let Some(role) = literal(role) else {
        return Ok(Err(nul_refused()));
    };
    let q = format!(
        "SELECT a.attname, a.atttypid::regtype::text FROM pg_attribute a \
         WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped \
         AND has_column_privilege({role}, a.attrelid, a.attnum, 'SELECT') ORDER BY a.attnum"
    );
    let cols: HashMap<String, String> = match sql.simple_query(&q).await {
        Ok(r) => r
            .first()
            .map(|r| {
                r.rows
                    .iter()
                    .map(|row| {
                        (
                            row[0].clone().unwrap_or_default(),
                            row[1].clone().unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Err(e @ PgError::Db { .. }) => return Ok(Err(render(&e))),
        Err(e) => return Err(e),
    };
    for f in &b.filters {
        let Some(ty) = cols.get(&f.column) else {
            return Ok(Err(raised(&trigger::invalid_column(&f.column))));
        };
        let Some(lit) = literal(f.value.as_str()) else {
            return Ok(Err(nul_refused()));
        };
        // The type name comes from the catalog; quoted all the same.
        let Some(ty_lit) = literal(ty) else {
            return Ok(Err(nul_refused()));
        };
        match f.op {
            Op::In => {
                let q = format!("SELECT coalesce(jsonb_array_length(to_jsonb({lit}::{ty}[])), 0)");
                match value(sql, &q).await? {
                    Ok(n) => {
                        let n: usize = n.and_then(|n| n.parse().ok()).unwrap_or(0);
                        if n > trigger::MAX_IN_VALUES {
                            return Ok(Err(raised(trigger::TOO_MANY_IN_VALUES)));
                        }
                    }
                    Err(e) => return Ok(Err(render(&e))),
                }
            }
            Op::Is => {
                if let Err(m) = f.static_check(ty) {
                    return Ok(Err(raised(&m)));
                }
            }
            Op::Like | Op::Ilike | Op::Match | Op::Imatch => {
                let regex = matches!(f.op, Op::Match | Op::Imatch);
                let q = if regex {
                    let name = if f.op == Op::Imatch { "~*" } else { "~" };
                    format!(
                        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_operator WHERE oprname = '{name}' \
                         AND oprleft = {t}::regtype AND oprright = {t}::regtype \
                         AND oprresult = 'boolean'::regtype)",
                        t = ty_lit
                    )
                } else {
                    format!(
                        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_operator \
                         WHERE oprname = '~~' AND oprleft = {ty_lit}::regtype)"
                    )
                };
                match value(sql, &q).await? {
                    Ok(Some(t)) if t == "t" => {}
                    Ok(_) => {
                        return Ok(Err(raised(&trigger::operator_requires_text(
                            f.op.as_str(),
                            ty,
                        ))))
                    }
                    Err(e) => return Ok(Err(render(&e))),
                }
                if regex {
                    if let Err(e) = value(sql, &format!("SELECT '' ~ {lit}")).await? {
                        let m = match &e {
                            PgError::Db { message, .. } => message.clone(),
                            other => other.to_string(),
                        };
                        return Ok(Err(raised(&trigger::invalid_regex(f.op.as_str(), &m))));
                    }
                }
            }
            _ => {
                if let Err(e) = value(sql, &format!("SELECT to_jsonb({lit}::{ty})")).await? {
                    return Ok(Err(render(&e)));
                }
            }
        }
    }
    if let Some(select) = &b.select {
        for c in select {
            if !cols.contains_key(c) {
                return Ok(Err(raised(&trigger::invalid_select(c))));
            }
        }
    }
    Ok(Ok(()))
}
