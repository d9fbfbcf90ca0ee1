//! Each Rust-evaluated case, NULL handling and `not.`.

use super::*;
use crate::realtime::postgres_changes::filter::parse_filters;
use Tri::{False as F, NeedsDatabase as Db, True as T};

const INT2: Oid = Oid(21);
const INT4: Oid = Oid(23);
const INT8: Oid = Oid(20);
const NUMERIC: Oid = Oid(1700);
const FLOAT4: Oid = Oid(700);
const FLOAT8: Oid = Oid(701);
const BOOL: Oid = Oid(16);
const TEXT: Oid = Oid(25);
const VARCHAR: Oid = Oid(1043);
const BPCHAR: Oid = Oid(1042);
const UUID: Oid = Oid(2950);
const TIMESTAMPTZ: Oid = Oid(1184);

fn f(s: &str) -> Filter {
    parse_filters(&format!("c={s}")).unwrap().pop().unwrap()
}

fn on(filter: &str, oid: Oid, text: &str) -> Tri {
    f(filter).eval(Some(&ColumnValue::Text(oid, text.as_bytes())))
}

fn on_null(filter: &str) -> Tri {
    f(filter).eval(Some(&ColumnValue::Null))
}

#[test]
fn integers_compare_exactly() {
    assert_eq!(on("eq.5", INT4, "5"), T);
    assert_eq!(on("eq. +005 ", INT4, "5"), T);
    assert_eq!(on("eq.6", INT4, "5"), F);
    assert_eq!(on("neq.6", INT4, "5"), T);
    assert_eq!(on("not.eq.5", INT4, "5"), F);
    assert_eq!(on("lt.10", INT4, "9"), T);
    assert_eq!(on("lt.-10", INT4, "9"), F);
    assert_eq!(on("lte.9", INT2, "9"), T);
    assert_eq!(on("gt.9", INT8, "9223372036854775807"), T);
    assert_eq!(
        on("gte.-9223372036854775808", INT8, "-9223372036854775808"),
        T
    );
    assert_eq!(on("not.gt.1", INT4, "2"), F);
    // Version-dependent or invalid spellings go to the database.
    for v in ["0x10", "1_000", "1.0", "1e2", "", "99999999999", "40000"] {
        let ty = if v == "40000" { INT2 } else { INT4 };
        assert_eq!(on(&format!("eq.{v}"), ty, "5"), Db, "{v}");
    }
}

#[test]
fn numeric_is_exact_decimal() {
    assert_eq!(on("eq.1.50", NUMERIC, "1.5"), T);
    assert_eq!(on("eq.15e-1", NUMERIC, "1.5000"), T);
    assert_eq!(on("eq.0.1", NUMERIC, "0.10000000000000000000001"), F);
    assert_eq!(on("lt.0.10000000000000000000001", NUMERIC, "0.1"), T);
    assert_eq!(on("gt.-1", NUMERIC, "0"), T);
    assert_eq!(on("gt.-2", NUMERIC, "-1.5"), T);
    assert_eq!(on("lt.-2", NUMERIC, "-10"), T);
    assert_eq!(on("gte.0", NUMERIC, "-0.000"), T);
    assert_eq!(on("gt.1e1000", NUMERIC, "NaN"), T);
    assert_eq!(on("gt.1e1000", NUMERIC, "Infinity"), T);
    assert_eq!(on("lt.-1e1000", NUMERIC, "-Infinity"), T);
    assert_eq!(on("eq.NaN", NUMERIC, "NaN"), Db);
    assert_eq!(on("eq.abc", NUMERIC, "1"), Db);
}

#[test]
fn floats_round_like_postgres() {
    assert_eq!(on("eq.0.1", FLOAT8, "0.1"), T);
    assert_eq!(on("eq.0.10000000000000001", FLOAT8, "0.1"), T);
    assert_eq!(on("eq.0.1", FLOAT4, "0.1"), T);
    assert_eq!(on("gt.0.1", FLOAT8, "0.30000000000000004"), T);
    assert_eq!(on("eq.0", FLOAT8, "-0"), T);
    assert_eq!(on("gt.1e300", FLOAT8, "NaN"), T);
    assert_eq!(on("lt.1e300", FLOAT8, "Infinity"), F);
    assert_eq!(on("eq.1e+20", FLOAT8, "1e+20"), T);
    assert_eq!(on("eq.1e400", FLOAT8, "1"), Db);
    assert_eq!(on("eq.1e-400", FLOAT8, "0"), Db);
    assert_eq!(on("eq.1e39", FLOAT4, "1"), Db);
    assert_eq!(on("eq.Infinity", FLOAT8, "Infinity"), Db);
}

#[test]
fn booleans() {
    assert_eq!(on("eq.true", BOOL, "t"), T);
    assert_eq!(on("eq.TRUE", BOOL, "t"), T);
    assert_eq!(on("eq.f", BOOL, "t"), F);
    assert_eq!(on("lt.true", BOOL, "f"), T);
    assert_eq!(on("eq.yes", BOOL, "t"), Db);
    assert_eq!(on("is.true", BOOL, "t"), T);
    assert_eq!(on("is.false", BOOL, "t"), F);
    assert_eq!(on("not.is.false", BOOL, "t"), T);
    assert_eq!(on("is.unknown", BOOL, "f"), F);
    assert_eq!(on("not.is.unknown", BOOL, "f"), T);
}

#[test]
fn text_equality_only() {
    assert_eq!(on("eq.hello", TEXT, "hello"), T);
    assert_eq!(on("eq.Hello", TEXT, "hello"), F);
    assert_eq!(on("neq.x", VARCHAR, "y"), T);
    assert_eq!(on("eq.\"a,b\"", TEXT, "a,b"), T);
    // `character` casts truncate to one character: the database decides.
    assert_eq!(on("eq.ab", BPCHAR, "ab   "), Db);
    assert_eq!(on("lt.b", TEXT, "a"), Db);
    for op in [
        "like.a%",
        "ilike.A%",
        "match.^a",
        "imatch.^A",
        "not.like.a%",
    ] {
        assert_eq!(on(op, TEXT, "abc"), Db, "{op}");
    }
}

#[test]
fn uuids_parse_like_uuid_in() {
    let u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    assert_eq!(on("eq.A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", UUID, u), T);
    assert_eq!(on("eq.{a0eebc999c0b4ef8bb6d6bb9bd380a11}", UUID, u), T);
    assert_eq!(on("eq.a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", UUID, u), T);
    assert_eq!(on("gt.00000000-0000-0000-0000-000000000000", UUID, u), T);
    assert_eq!(on("eq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", UUID, u), Db);
    assert_eq!(on("eq. a0eebc999c0b4ef8bb6d6bb9bd380a11", UUID, u), Db);
}

#[test]
fn in_lists() {
    assert_eq!(on("in.(1,2,3)", INT4, "2"), T);
    assert_eq!(on("in.(1,2,3)", INT4, "4"), F);
    assert_eq!(on("not.in.(1,2,3)", INT4, "4"), T);
    assert_eq!(on("not.in.(1,2,3)", INT4, "2"), F);
    // A NULL element makes a miss NULL: fails, negated or not.
    assert_eq!(on("in.(1,null)", INT4, "4"), F);
    assert_eq!(on("not.in.(1,null)", INT4, "4"), F);
    assert_eq!(on("in.(1,null)", INT4, "1"), T);
    assert_eq!(on("in.(a,\"b c\")", TEXT, "b c"), T);
    assert_eq!(on("in.()", INT4, "1"), F);
    assert_eq!(on("not.in.()", INT4, "1"), T);
    assert_eq!(on("in.(x)", INT4, "1"), Db);
    assert_eq!(on("in.({1})", INT4, "1"), Db);
    assert_eq!(
        on("in.(2024-01-01)", TIMESTAMPTZ, "2024-01-01 00:00:00+00"),
        Db
    );
}

#[test]
fn null_column_values() {
    for op in [
        "eq.1",
        "neq.1",
        "lt.1",
        "lte.1",
        "gt.1",
        "gte.1",
        "like.%",
        "ilike.%",
        "match..",
        "imatch..",
        "not.eq.1",
        "not.neq.1",
        "not.like.%",
        "in.(1)",
        "not.in.(1)",
    ] {
        assert_eq!(on_null(op), F, "{op}");
    }
    assert_eq!(on_null("in.()"), F);
    assert_eq!(on_null("not.in.()"), T);
    assert_eq!(on_null("is.null"), T);
    assert_eq!(on_null("not.is.null"), F);
    assert_eq!(on_null("is.true"), F);
    assert_eq!(on_null("not.is.true"), T);
    assert_eq!(on_null("is.false"), F);
    assert_eq!(on_null("is.unknown"), T);
    assert_eq!(on_null("not.is.unknown"), F);
    assert_eq!(on_null("isdistinct.1"), T);
    assert_eq!(on_null("not.isdistinct.1"), F);
    assert_eq!(on_null("is.nil"), F);
}

#[test]
fn is_and_isdistinct_on_values() {
    assert_eq!(on("is.null", INT4, "1"), F);
    assert_eq!(on("not.is.null", TEXT, ""), T);
    assert_eq!(on("is.null", Oid(90_000), "(,)"), Db);
    assert_eq!(on("is.true", INT4, "1"), Db);
    assert_eq!(on("isdistinct.1", INT4, "1"), F);
    assert_eq!(on("isdistinct.2", INT4, "1"), T);
    assert_eq!(on("not.isdistinct.1", INT4, "1"), T);
    assert_eq!(on("isdistinct.x", TIMESTAMPTZ, "x"), Db);
}

#[test]
fn absent_and_opaque_values() {
    assert_eq!(f("eq.1").eval(None), F);
    assert_eq!(f("is.null").eval(None), F);
    assert_eq!(f("eq.1").eval(Some(&ColumnValue::Opaque)), Db);
    assert_eq!(
        on("eq.2024-01-01", TIMESTAMPTZ, "2024-01-01 00:00:00+00"),
        Db
    );
    assert_eq!(on("eq.1", Oid(90_000), "1"), Db);
}

#[test]
fn sql_for_the_database() {
    assert_eq!(f("eq.1").sql("integer"), "$1::integer = ($2::integer)");
    assert_eq!(
        f("not.like.a%").sql("text"),
        "NOT ($1::text LIKE ($2::text))"
    );
    assert_eq!(
        f("in.(1,2)").sql("integer"),
        "$1::integer = ANY ($2::integer[])"
    );
    assert_eq!(
        f("not.in.(1)").sql("integer"),
        "NOT ($1::integer = ANY ($2::integer[]))"
    );
    assert_eq!(f("imatch.^a").sql("text"), "$1::text ~* ($2::text)");
    assert_eq!(f("is.null").sql("integer"), "$1::integer IS NULL");
    assert_eq!(
        f("not.is.unknown").sql("boolean"),
        "$1::boolean IS NOT UNKNOWN"
    );
    assert_eq!(
        f("not.isdistinct.1").sql("integer"),
        "$1::integer IS NOT DISTINCT FROM $2::integer"
    );
    assert_eq!(
        f("isdistinct.1").sql("uuid"),
        "$1::uuid IS DISTINCT FROM $2::uuid"
    );
}

#[test]
fn tri_and() {
    assert_eq!(T.and(T), T);
    assert_eq!(T.and(Db), Db);
    assert_eq!(Db.and(F), F);
    assert_eq!(F.and(Db), F);
}
