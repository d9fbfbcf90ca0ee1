//! The statements of one RLS check (PROTOCOL 4.3) as a pipeline segment,
//! and the reading of their outcomes. Each check is its own transaction,
//! always rolled back, statement for statement what the Elixir server
//! runs: so checks written back to back on one connection (see
//! `rls_batch`) each get exactly the answer they would get alone.
//!
//! Read: `BEGIN`; the probe rows inserted by the connection's own
//! (privileged) user, with ids made here so that nothing waits for a
//! reply; the session settings; the probes selected back as the role;
//! `ROLLBACK`. Write: `BEGIN`; the settings; per extension an INSERT as
//! the role in a savepoint (`42501` is a refusal); `ROLLBACK`. Every
//! client value is a bound parameter.

use super::pgconn::PgError;
use crate::proto::pg::extended::{DbError, Rows};
use crate::realtime::authz::{AuthContext, AuthError, AuthRequest, Policies};
use crate::realtime::tenant::row::uuid_v4;

/// One statement: its text and parameters.
pub type Stmt<'a> = (&'static str, Vec<Option<&'a str>>);

const SETTINGS: &str = "SELECT set_config('role', $1, true), \
     set_config('realtime.topic', $2, true), \
     set_config('request.jwt.claims', $3, true), \
     set_config('request.jwt.claim.sub', $4, true), \
     set_config('request.jwt.claim.role', $5, true), \
     set_config('request.headers', $6, true)";
const PROBE_BROADCAST: &str =
    "INSERT INTO realtime.messages (id, topic, extension, inserted_at, updated_at) \
     VALUES ($2::uuid, $1, 'broadcast', now(), now())";
const PROBE_BOTH: &str =
    "INSERT INTO realtime.messages (id, topic, extension, inserted_at, updated_at) \
     VALUES ($2::uuid, $1, 'broadcast', now(), now()), ($3::uuid, $1, 'presence', now(), now())";
const SELECT_PROBES: &str =
    "SELECT id::text FROM realtime.messages WHERE id IN ($1::uuid, $2::uuid)";

/// Statements planned at each run: the probes' SELECT. Every check's
/// rollback leaves its probes as dead rows in today's partition until a
/// vacuum, thousands a second under a join storm; a plan made once, when
/// the partition was small, scans them all, where a plan made now looks
/// the probes up in the primary key.
pub const UNPREPARED: &[&str] = &[SELECT_PROBES];
const WRITE_BROADCAST: &str =
    "INSERT INTO realtime.messages (id, topic, extension, inserted_at, updated_at) \
     VALUES (gen_random_uuid(), $1, 'broadcast', now(), now())";
const WRITE_PRESENCE: &str =
    "INSERT INTO realtime.messages (id, topic, extension, inserted_at, updated_at) \
     VALUES (gen_random_uuid(), $1, 'presence', now(), now())";

/// Statements of a read segment and of a write segment.
const READ_LEN: usize = 5;
const WRITE_LEN: usize = 9;

/// The probe ids of one check's read (broadcast, presence).
pub struct Probes([String; 2]);

impl Probes {
    /// Fresh random ids.
    pub fn fresh() -> Probes {
        Probes([uuid_v4(rand::random()), uuid_v4(rand::random())])
    }
}

/// Whether a value cannot travel as Postgres text: the check is refused
/// as the database would refuse it (a policy error), before it is sent.
pub fn unsendable(ctx: &AuthContext) -> Option<AuthError> {
    let values = [
        &*ctx.topic,
        &*ctx.role,
        &*ctx.claims,
        ctx.sub.as_deref().unwrap_or(""),
        &*ctx.headers,
    ];
    values.iter().any(|v| v.contains('\0')).then(|| {
        AuthError::RlsPolicy(
            "a value of the check contains a NUL byte, which Postgres text cannot hold".into(),
        )
    })
}

fn settings(ctx: &AuthContext) -> Stmt<'_> {
    (
        SETTINGS,
        vec![
            Some(&*ctx.role),
            Some(&*ctx.topic),
            Some(&*ctx.claims),
            ctx.sub.as_deref(),
            Some(&*ctx.role),
            Some(&*ctx.headers),
        ],
    )
}

/// Appends the statements of `req` to `out`.
pub fn push<'a>(req: &'a AuthRequest, probes: &'a Probes, out: &mut Vec<Stmt<'a>>) {
    let ctx = &*req.ctx;
    let topic = Some(&*ctx.topic);
    if let Some(presence) = req.read {
        out.push(("BEGIN", vec![]));
        out.push(if presence {
            (
                PROBE_BOTH,
                vec![topic, Some(&probes.0[0]), Some(&probes.0[1])],
            )
        } else {
            (PROBE_BROADCAST, vec![topic, Some(&probes.0[0])])
        });
        out.push(settings(ctx));
        out.push((
            SELECT_PROBES,
            vec![Some(&probes.0[0]), presence.then_some(&*probes.0[1])],
        ));
        out.push(("ROLLBACK", vec![]));
    }
    if req.write {
        out.push(("BEGIN", vec![]));
        out.push(settings(ctx));
        for insert in [WRITE_BROADCAST, WRITE_PRESENCE] {
            out.push(("SAVEPOINT rls_write", vec![]));
            out.push((insert, vec![topic]));
            out.push(("ROLLBACK TO SAVEPOINT rls_write", vec![]));
        }
        out.push(("ROLLBACK", vec![]));
    }
}

/// How many statements [`push`] appends for `req`.
pub fn len(req: &AuthRequest) -> usize {
    req.read.map_or(0, |_| READ_LEN) + if req.write { WRITE_LEN } else { 0 }
}

/// What one check's outcomes say.
pub struct Read {
    /// The answer.
    pub answer: Result<Policies, AuthError>,
    /// Every transaction it opened was rolled back: the connection is
    /// outside any transaction again.
    pub clean: bool,
}

/// Reads the outcomes of the statements [`push`] appended for `req`.
pub fn read(
    req: &AuthRequest,
    probes: &Probes,
    outcomes: &[Result<Rows, DbError>],
    map: impl Fn(&DbError) -> AuthError,
) -> Read {
    let mut p = Policies::default();
    let mut error = None;
    let mut clean = true;
    let mut at = 0;
    if let Some(presence) = req.read {
        let seg = &outcomes[at..at + READ_LEN];
        at += READ_LEN;
        clean &= seg[4].is_ok();
        match seg[..4].iter().find_map(|r| r.as_ref().err()) {
            Some(e) => error = Some(map(e)),
            None => {
                let seen = seg[3].as_ref().map(|r| &r.rows[..]).unwrap_or(&[]);
                let visible = |id: &str| {
                    seen.iter()
                        .any(|r| r.first().and_then(|v| v.as_deref()) == Some(id))
                };
                p.broadcast_read = Some(visible(&probes.0[0]));
                if presence {
                    p.presence_read = Some(visible(&probes.0[1]));
                }
            }
        }
    }
    if req.write {
        let seg = &outcomes[at..at + WRITE_LEN];
        clean &= seg[8].is_ok();
        let mut allowed = [None, None];
        for (i, r) in seg[..8].iter().enumerate() {
            let insert = match i {
                3 => Some(0),
                6 => Some(1),
                _ => None,
            };
            match (insert, r) {
                (Some(k), Ok(_)) => allowed[k] = Some(true),
                (Some(k), Err(e)) if e.code == "42501" => allowed[k] = Some(false),
                (_, Err(e)) => {
                    error.get_or_insert_with(|| map(e));
                    break;
                }
                (None, Ok(_)) => {}
            }
        }
        p.broadcast_write = allowed[0];
        p.presence_write = allowed[1];
    }
    Read {
        answer: match error {
            Some(e) => Err(e),
            None => Ok(p),
        },
        clean,
    }
}

/// The Elixir server's reading of a failed check.
pub fn map_error(e: &PgError) -> AuthError {
    match e {
        PgError::Db { code, message, .. } => match code.as_str() {
            "57014" => AuthError::QueryCanceled(message.clone()),
            // A row with no partition to go to: today's is missing.
            "23514" if message.contains("\"messages") => AuthError::MissingPartition,
            _ => AuthError::RlsPolicy(format!("{code}: {message}")),
        },
        // A value the protocol cannot carry (a NUL byte in the topic):
        // the database would have refused it as a policy error.
        PgError::Param(m) => AuthError::RlsPolicy(m.clone()),
        other => AuthError::DatabaseUnavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(code: &str, message: &str) -> PgError {
        PgError::Db {
            severity: "ERROR".into(),
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn errors_map_as_the_elixir_server_reads_them() {
        assert_eq!(
            map_error(&db("57014", "canceling statement due to statement timeout")),
            AuthError::QueryCanceled("canceling statement due to statement timeout".into())
        );
        assert_eq!(
            map_error(&db(
                "23514",
                "no partition of relation \"messages\" found for row"
            )),
            AuthError::MissingPartition
        );
        assert!(matches!(
            map_error(&db("23514", "violates check constraint \"x\" of \"t\"")),
            AuthError::RlsPolicy(_)
        ));
        assert!(matches!(
            map_error(&db("22023", "role \"nobody\" does not exist")),
            AuthError::RlsPolicy(_)
        ));
        assert!(matches!(
            map_error(&PgError::Timeout("x".into())),
            AuthError::DatabaseUnavailable(_)
        ));
    }
}
