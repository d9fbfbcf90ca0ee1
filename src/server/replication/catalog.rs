//! Catalog lookups the replication driver needs, over its SQL connection:
//! the publication's existence and the types pgoutput names by OID only.

use crate::proto::pg::types::{
    unresolved, Category, CompositeField, TypeCache, TypeInfo, TypeKind,
};
use crate::proto::pg::Oid;
use crate::server::pgconn::{PgConn, PgError};

/// Quotes configured text (publication, slot) as a string constant; a NUL
/// byte, which no catalog name can hold, is a configuration error.
pub fn literal(s: &str) -> Result<String, PgError> {
    crate::proto::pg::sql::literal(s)
        .ok_or_else(|| PgError::Protocol(format!("{s:?} holds a NUL byte")))
}

/// Whether `publication` exists (the server never creates it).
pub async fn publication_exists(sql: &mut PgConn, publication: &str) -> Result<bool, PgError> {
    let q = format!(
        "SELECT 1 FROM pg_publication WHERE pubname = {}",
        literal(publication)?
    );
    Ok(!sql.simple_query(&q).await?[0].rows.is_empty())
}

/// Fills `cache` with every type `oids` need that is not built in:
/// domains (to their base), enums, arrays of them, composites, and types
/// with a cast to json.
pub async fn resolve_types(
    sql: &mut PgConn,
    cache: &mut TypeCache,
    oids: &[Oid],
) -> Result<(), PgError> {
    let mut todo = unresolved(oids.iter().copied(), cache);
    let mut rounds = 0;
    while !todo.is_empty() && rounds < 8 {
        rounds += 1;
        for oid in todo {
            let q = format!(
                "SELECT t.typname, t.typtype, t.typbasetype, t.typelem, \
                 t.typsubscript = 'array_subscript_handler'::regproc, t.typrelid, \
                 coalesce(e.typdelim, ','), EXISTS (SELECT 1 FROM pg_cast \
                 WHERE castsource = t.oid AND casttarget = 'json'::regtype) \
                 FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem WHERE t.oid = {}",
                oid.0
            );
            let rows = sql.simple_query(&q).await?;
            let Some(f) = rows.first().and_then(|r| r.rows.first()) else {
                // Dropped meanwhile: render as a string rather than stall.
                cache.insert(
                    oid,
                    TypeInfo {
                        name: format!("{}", oid.0),
                        kind: TypeKind::Scalar(Category::String),
                    },
                );
                continue;
            };
            let col = |i: usize| f.get(i).cloned().flatten().unwrap_or_default();
            let num = |i: usize| Oid(col(i).parse().unwrap_or(0));
            let kind = match (col(1).as_str(), col(4).as_str()) {
                _ if col(7) == "t" => TypeKind::CastToJson,
                ("d", _) => TypeKind::Domain { base: num(2) },
                ("c", _) => {
                    let q = format!(
                        "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = {} \
                         AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                        col(5)
                    );
                    let fields = sql
                        .simple_query(&q)
                        .await?
                        .remove(0)
                        .rows
                        .into_iter()
                        .map(|a| CompositeField {
                            name: a[0].clone().unwrap_or_default(),
                            type_oid: Oid(a[1].as_deref().unwrap_or("0").parse().unwrap_or(0)),
                        });
                    TypeKind::Composite {
                        fields: fields.collect(),
                    }
                }
                (_, "t") => TypeKind::Array {
                    elem: num(3),
                    delim: col(6).bytes().next().unwrap_or(b','),
                },
                _ => TypeKind::Scalar(Category::String),
            };
            cache.insert(oid, TypeInfo { name: col(0), kind });
        }
        todo = unresolved(oids.iter().copied(), cache);
    }
    Ok(())
}

/// Positions (in the Relation's column list) of the table's primary key
/// columns; empty when it has none.
pub async fn primary_key(
    sql: &mut PgConn,
    rel: &crate::proto::pg::pgoutput::Relation,
) -> Result<Vec<usize>, PgError> {
    let q = format!(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a \
         ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = {} AND i.indisprimary",
        rel.oid.0
    );
    let rows = sql.simple_query(&q).await?;
    let names: Vec<String> = rows
        .first()
        .map(|r| r.rows.iter().filter_map(|row| row[0].clone()).collect())
        .unwrap_or_default();
    Ok(rel
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| names.contains(&c.name))
        .map(|(i, _)| i)
        .collect())
}
