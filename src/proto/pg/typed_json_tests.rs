//! Unit tests of each typed JSON rule.

use super::*;
use crate::proto::pg::types::{BuiltinsOnly, TypeCache, TypeInfo, TypeKind, BUILTIN_TYPES};
use proptest::prelude::*;

const INT4: Oid = Oid(23);
const TEXT: Oid = Oid(25);

fn conv_with(oid: u32, text: &str, types: &dyn TypeResolver) -> Result<String, TypedJsonError> {
    let mut v = Vec::new();
    write_typed(&mut v, Oid(oid), text.as_bytes(), types)?;
    Ok(String::from_utf8(v).unwrap())
}

fn conv(oid: u32, text: &str) -> String {
    conv_with(oid, text, &BuiltinsOnly).unwrap_or_else(|e| panic!("{oid} {text:?}: {e}"))
}

fn fails(oid: u32, text: &str) -> TypedJsonError {
    conv_with(oid, text, &BuiltinsOnly).expect_err(text)
}

#[test]
fn numbers() {
    assert_eq!(conv(21, "-32768"), "-32768");
    assert_eq!(conv(23, "42"), "42");
    assert_eq!(conv(20, "9223372036854775807"), "9223372036854775807");
    assert_eq!(conv(1700, "1.50"), "1.50");
    assert_eq!(conv(1700, "-0.000001"), "-0.000001");
    assert_eq!(conv(701, "1e+100"), format!("1{}", "0".repeat(100)));
    assert_eq!(conv(700, "1.5e-07"), "0.00000015");
    assert_eq!(conv(701, "-0"), "0");
    for special in ["NaN", "Infinity", "-Infinity"] {
        assert_eq!(conv(701, special), format!("\"{special}\""));
        assert_eq!(conv(1700, special), format!("\"{special}\""));
    }
    assert!(matches!(
        fails(23, "4x"),
        TypedJsonError::Invalid { what: "number" }
    ));
    assert!(matches!(fails(23, ""), TypedJsonError::Invalid { .. }));
    assert!(matches!(fails(701, "inf"), TypedJsonError::Invalid { .. }));
}

#[test]
fn booleans() {
    assert_eq!(conv(16, "t"), "true");
    assert_eq!(conv(16, "f"), "false");
    assert!(matches!(
        fails(16, "true"),
        TypedJsonError::Invalid { what: "bool" }
    ));
}

#[test]
fn json_and_jsonb() {
    assert_eq!(
        conv(3802, r#"{"a": {"b": [1, null]}, "cc": "x"}"#),
        r#"{"a":{"b":[1,null]},"cc":"x"}"#
    );
    assert_eq!(
        conv(114, r#"{"cc": 1, "a": 2, "a": 3}"#),
        r#"{"a":3,"cc":1}"#
    );
    assert_eq!(conv(114, " [1.0, 2E1] "), "[1.0,20]");
    assert_eq!(conv(3802, "\"str\""), "\"str\"");
    assert!(matches!(fails(3802, "{"), TypedJsonError::Json(_)));
}

#[test]
fn timestamps() {
    let ts = |s| conv(1114, s);
    assert_eq!(
        ts("2024-01-01 12:00:00.123456"),
        "\"2024-01-01T12:00:00.123456\""
    );
    assert_eq!(ts("2024-01-01 12:00:00"), "\"2024-01-01T12:00:00\"");
    assert_eq!(ts("0044-03-15 00:00:00 BC"), "\"0044-03-15T00:00:00 BC\"");
    assert_eq!(ts("10000-01-01 00:00:00"), "\"10000-01-01T00:00:00\"");
    assert_eq!(ts("infinity"), "\"infinity\"");
    assert_eq!(ts("-infinity"), "\"-infinity\"");
    let tz = |s| conv(1184, s);
    assert_eq!(
        tz("2024-01-01 12:00:00.123456+00"),
        "\"2024-01-01T12:00:00.123456+00:00\""
    );
    assert_eq!(
        tz("2024-01-01 12:00:00-03"),
        "\"2024-01-01T12:00:00-03:00\""
    );
    assert_eq!(
        tz("2024-01-01 12:00:00+05:30"),
        "\"2024-01-01T12:00:00+05:30\""
    );
    assert_eq!(
        tz("1900-01-01 00:00:00+00:01:15"),
        "\"1900-01-01T00:00:00+00:01:15\""
    );
    assert_eq!(
        tz("0044-03-15 00:00:00+00 BC"),
        "\"0044-03-15T00:00:00+00:00 BC\""
    );
    assert_eq!(tz("infinity"), "\"infinity\"");
    for bad in [
        "2024-01-01",
        "2024-01-01 12:00",
        "x 12:00:00",
        "2024-01-01 12:00:00 AD",
    ] {
        assert!(
            matches!(fails(1114, bad), TypedJsonError::Invalid { .. }),
            "{bad}"
        );
    }
    for bad in [
        "2024-01-01 12:00:00",
        "2024-01-01 12:00:00+",
        "2024-01-01 12:00:00*00",
    ] {
        assert!(
            matches!(fails(1184, bad), TypedJsonError::Invalid { .. }),
            "{bad}"
        );
    }
}

#[test]
fn strings_and_other_types() {
    assert_eq!(conv(1082, "2024-01-01"), "\"2024-01-01\"");
    assert_eq!(conv(1083, "12:00:00.5"), "\"12:00:00.5\"");
    assert_eq!(conv(1266, "12:00:00+00"), "\"12:00:00+00\"");
    assert_eq!(conv(1186, "-1 days -02:00:00"), "\"-1 days -02:00:00\"");
    assert_eq!(conv(17, "\\x0102"), r#""\\x0102""#);
    assert_eq!(conv(25, "q\"b\\s\nü😀"), "\"q\\\"b\\\\s\\nü😀\"");
    assert_eq!(
        conv(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""
    );
    assert_eq!(conv(26, "12345"), "\"12345\"");
    assert_eq!(conv(790, "$1,000.00"), "\"$1,000.00\"");
    assert_eq!(conv(869, "192.168.0.1/24"), "\"192.168.0.1/24\"");
}

#[test]
fn arrays() {
    assert_eq!(conv(1007, "{1,2,3}"), "[1,2,3]");
    assert_eq!(conv(1007, "{}"), "[]");
    assert_eq!(conv(1007, "{{1,2},{3,NULL}}"), "[[1,2],[3,null]]");
    assert_eq!(conv(1007, "[0:1]={7,8}"), "[7,8]");
    assert_eq!(conv(1007, "[1:2][-1:0]={{1,2},{3,4}}"), "[[1,2],[3,4]]");
    assert_eq!(conv(1007, "{ 1 , 2 }"), "[1,2]");
    assert_eq!(conv(1000, "{t,f,NULL}"), "[true,false,null]");
    assert_eq!(conv(1231, "{1.50,NaN}"), "[1.50,\"NaN\"]");
    assert_eq!(
        conv(1009, r#"{plain,"a b","NULL",NULL,null,"q\"x","b\\s",""}"#),
        r#"["plain","a b","NULL",null,null,"q\"x","b\\s",""]"#
    );
    assert_eq!(conv(1009, r#"{"{}","a,b"," x "}"#), r#"["{}","a,b"," x "]"#);
    assert_eq!(conv(1009, r#"{a\,b,\NULL}"#), r#"["a,b","NULL"]"#);
    assert_eq!(
        conv(1185, r#"{"2024-01-01 12:00:00+00",NULL}"#),
        r#"["2024-01-01T12:00:00+00:00",null]"#
    );
    assert_eq!(
        conv(3807, r#"{"{\"a\": 1}","[1, 2]",NULL}"#),
        r#"[{"a":1},[1,2],null]"#
    );
    assert_eq!(conv(1001, r#"{"\\x0102",NULL}"#), r#"["\\x0102",null]"#);
    assert_eq!(conv(1009, "{{a,b},{c,d}}"), r#"[["a","b"],["c","d"]]"#);
    assert_eq!(conv(1009, "{{}}"), "[[]]");
    for bad in [
        "",
        "1,2",
        "{1,2",
        "{1,,2}",
        "{,}",
        "{1}x",
        "{\"a}",
        "[1:2{1}",
        "[a]={1}",
        "{1{2}}",
        "{{{{{{{1}}}}}}}",
    ] {
        assert!(conv_with(1007, bad, &BuiltinsOnly).is_err(), "{bad:?}");
    }
    // Element conversion errors propagate.
    assert!(matches!(
        fails(1007, "{1,x}"),
        TypedJsonError::Invalid { what: "number" }
    ));
}

fn resolver() -> TypeCache {
    let mut c = TypeCache::new();
    let mut add = |oid, name: &str, kind| {
        c.insert(
            Oid(oid),
            TypeInfo {
                name: name.into(),
                kind,
            },
        )
    };
    add(9001, "posint", TypeKind::Domain { base: INT4 });
    add(
        9002,
        "_posint",
        TypeKind::Array {
            elem: Oid(9001),
            delim: b',',
        },
    );
    add(9003, "mood", TypeKind::Scalar(Category::String));
    add(
        9004,
        "_mood",
        TypeKind::Array {
            elem: Oid(9003),
            delim: b',',
        },
    );
    let f = |name: &str, oid| CompositeField {
        name: name.into(),
        type_oid: oid,
    };
    add(
        9005,
        "pair",
        TypeKind::Composite {
            fields: vec![
                f("zz", TEXT),
                f("a", INT4),
                f("b", Oid(3802)),
                f("m", Oid(9003)),
            ],
        },
    );
    add(
        9006,
        "_pair",
        TypeKind::Array {
            elem: Oid(9005),
            delim: b',',
        },
    );
    add(
        9007,
        "outer",
        TypeKind::Composite {
            fields: vec![f("inner", Oid(9005)), f("list", Oid(1007))],
        },
    );
    add(9008, "geometry", TypeKind::CastToJson);
    add(9009, "loop", TypeKind::Domain { base: Oid(9009) });
    add(
        9010,
        "_box",
        TypeKind::Array {
            elem: TEXT,
            delim: b';',
        },
    );
    add(9011, "empty", TypeKind::Composite { fields: vec![] });
    c
}

#[test]
fn resolved_types() {
    let r = resolver();
    let c = |oid, text| conv_with(oid, text, &r).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(c(9001, "5"), "5");
    assert_eq!(c(9002, "{1,NULL}"), "[1,null]");
    assert_eq!(c(9003, "happy"), "\"happy\"");
    assert_eq!(c(9004, "{happy,sad}"), r#"["happy","sad"]"#);
    // Keys in jsonb order (length, then bytes); empty unquoted field = NULL.
    assert_eq!(
        c(9005, r#"("x ""y"" \\z",7,"{""k"": 1}",)"#),
        r#"{"a":7,"b":{"k":1},"m":null,"zz":"x \"y\" \\z"}"#
    );
    assert_eq!(
        c(9005, r#"("",,,ok)"#),
        r#"{"a":null,"b":null,"m":"ok","zz":""}"#
    );
    assert_eq!(
        c(9006, r#"{"(a,1,,)",NULL}"#),
        r#"[{"a":1,"b":null,"m":null,"zz":"a"},null]"#
    );
    assert_eq!(
        c(9007, r#"("(q,2,[],)","{1,2}")"#),
        r#"{"list":[1,2],"inner":{"a":2,"b":[],"m":null,"zz":"q"}}"#
    );
    assert_eq!(c(9010, "{a;b,c}"), r#"["a","b,c"]"#);
    assert_eq!(c(9011, "()"), "{}");
    assert_eq!(
        conv_with(9008, "0101000000", &r),
        Err(TypedJsonError::NeedsDatabase(Oid(9008)))
    );
    assert_eq!(conv_with(9009, "1", &r), Err(TypedJsonError::TooDeep));
    assert_eq!(
        conv_with(9001, "5", &BuiltinsOnly),
        Err(TypedJsonError::UnknownType(Oid(9001)))
    );
    for bad in [
        "(a,1,,)x",
        "(a,1,)",
        "(a,1,,,)",
        "a,1,,",
        "(\"a,1,,)",
        "(a,x,,)",
    ] {
        assert!(conv_with(9005, bad, &r).is_err(), "{bad}");
    }
    assert!(conv_with(9011, "(x)", &r).is_err());
}

#[test]
fn errors_leave_the_buffer_alone_and_fallback_writes_a_string() {
    let mut out = b"prefix".to_vec();
    assert!(write_typed(&mut out, Oid(1007), b"{1,2,x}", &BuiltinsOnly).is_err());
    assert_eq!(out, b"prefix");
    write_typed_or_string(&mut out, Oid(1007), b"{1,2,x}", &BuiltinsOnly);
    assert_eq!(out, b"prefix\"{1,2,x}\"");
    let mut out = BytesMut::new();
    write_typed_or_string(&mut out, Oid(424242), b"v", &BuiltinsOnly);
    write_typed_or_string(&mut out, INT4, b"7", &BuiltinsOnly);
    assert_eq!(&out[..], b"\"v\"7");
}

#[test]
fn columns() {
    let mut out = Vec::new();
    write_column(&mut out, INT4, Column::Null, &BuiltinsOnly).unwrap();
    write_column(&mut out, INT4, Column::Text(b"3"), &BuiltinsOnly).unwrap();
    assert_eq!(out, b"null3");
    assert_eq!(
        write_column(&mut out, INT4, Column::UnchangedToast, &BuiltinsOnly),
        Err(TypedJsonError::UnchangedToast)
    );
    assert_eq!(
        write_column(&mut out, INT4, Column::Binary(b"\0\0\0\x03"), &BuiltinsOnly),
        Err(TypedJsonError::Binary)
    );
    assert_eq!(out, b"null3");
}

/// Quotes an element the way `array_out` does.
fn array_elem(s: &str) -> String {
    let needs = s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.bytes()
            .any(|b| matches!(b, b'{' | b'}' | b',' | b'"' | b'\\') || b.is_ascii_whitespace());
    if !needs {
        return s.to_string();
    }
    let mut q = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

proptest! {
    #[test]
    fn text_arrays_round_trip(items in proptest::collection::vec(proptest::option::of(".{0,6}"), 0..8)) {
        let literal = format!(
            "{{{}}}",
            items
                .iter()
                .map(|i| i.as_deref().map_or("NULL".to_string(), array_elem))
                .collect::<Vec<_>>()
                .join(",")
        );
        let json = conv(1009, &literal);
        let got: Vec<Option<String>> = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(got, items);
    }

    #[test]
    fn int_arrays_round_trip(items in proptest::collection::vec(proptest::collection::vec(any::<i32>(), 2), 1..4)) {
        let literal = format!(
            "{{{}}}",
            items
                .iter()
                .map(|row| format!("{{{}}}", row.iter().map(i32::to_string).collect::<Vec<_>>().join(",")))
                .collect::<Vec<_>>()
                .join(",")
        );
        let got: Vec<Vec<i32>> = serde_json::from_str(&conv(1007, &literal)).unwrap();
        prop_assert_eq!(got, items);
    }

    #[test]
    fn random_text_never_panics(s in proptest::collection::vec(any::<u8>(), 0..48), which in 0usize..BUILTIN_TYPES.len()) {
        let r = resolver();
        for oid in [BUILTIN_TYPES[which].oid, Oid(9005), Oid(9006), Oid(9007)] {
            let mut out = Vec::new();
            if write_typed(&mut out, oid, &s, &r).is_ok() {
                prop_assert!(serde_json::from_slice::<&serde_json::value::RawValue>(&out).is_ok(), "{:?}", String::from_utf8_lossy(&out));
            } else {
                prop_assert!(out.is_empty());
            }
        }
    }
}
