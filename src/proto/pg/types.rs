//! Which JSON rendering a column type gets, and its `typname`.
//!
//! Built-in types come from a static table ([`BUILTIN_TYPES`]), checked
//! against `pg_type` by the oracle test. Every other OID (enums, domains,
//! composites, extension types, arrays of those) is answered by a
//! [`TypeResolver`] the caller provides: the replication driver fills a
//! [`TypeCache`] from a catalog query when a Relation names an OID that
//! [`unresolved`] reports, before converting that relation's rows.

use std::collections::HashMap;

use super::Oid;

/// How `to_jsonb` renders a scalar (non-array, non-composite) type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// `int2 int4 int8 float4 float8 numeric`: a JSON number, or a string for
    /// `NaN` and the infinities.
    Number,
    /// `bool`: `true` / `false`.
    Bool,
    /// `json`: the document, converted to jsonb (keys sorted, last
    /// duplicate wins, numbers normalised).
    Json,
    /// `jsonb`: the document as jsonb prints it.
    Jsonb,
    /// `timestamp`: ISO 8601 with `T`.
    Timestamp,
    /// `timestamptz`: ISO 8601 with `T` and a `+HH:MM` offset.
    TimestampTz,
    /// Everything else: the text output as a JSON string.
    String,
}

/// One row of the built-in type table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinType {
    /// `pg_type.oid`.
    pub oid: Oid,
    /// `pg_type.typname`.
    pub name: &'static str,
    /// Rendering of the type (of its elements, for arrays).
    pub category: Category,
    /// `pg_type.typelem` for array types, `None` for scalars.
    pub elem: Option<Oid>,
}

macro_rules! builtin_types {
    ($( $oid:literal $name:literal $cat:ident $aoid:literal ),* $(,)?) => {
        /// Built-in scalar types and their array types, sorted by OID.
        /// Columns: oid, typname, category, array type oid.
        const SCALARS: &[(u32, &str, Category, u32)] = &[
            $( ($oid, $name, Category::$cat, $aoid) ),*
        ];
    };
}

builtin_types! {
    16 "bool" Bool 1000,
    17 "bytea" String 1001,
    18 "char" String 1002,
    19 "name" String 1003,
    20 "int8" Number 1016,
    21 "int2" Number 1005,
    23 "int4" Number 1007,
    25 "text" String 1009,
    26 "oid" String 1028,
    114 "json" Json 199,
    142 "xml" String 143,
    650 "cidr" String 651,
    700 "float4" Number 1021,
    701 "float8" Number 1022,
    774 "macaddr8" String 775,
    790 "money" String 791,
    829 "macaddr" String 1040,
    869 "inet" String 1041,
    1042 "bpchar" String 1014,
    1043 "varchar" String 1015,
    1082 "date" String 1182,
    1083 "time" String 1183,
    1114 "timestamp" Timestamp 1115,
    1184 "timestamptz" TimestampTz 1185,
    1186 "interval" String 1187,
    1266 "timetz" String 1270,
    1560 "bit" String 1561,
    1562 "varbit" String 1563,
    1700 "numeric" Number 1231,
    2950 "uuid" String 2951,
    3802 "jsonb" Jsonb 3807,
}

/// Number of built-in types: every scalar plus its array type.
const NR_BUILTINS: usize = SCALARS.len() * 2;

/// The built-in types handled without a resolver (scalars and their `_`
/// array types), sorted by OID.
pub static BUILTIN_TYPES: [BuiltinType; NR_BUILTINS] = build_table();

const fn build_table() -> [BuiltinType; NR_BUILTINS] {
    const EMPTY: BuiltinType = BuiltinType {
        oid: Oid(0),
        name: "",
        category: Category::String,
        elem: None,
    };
    let mut t = [EMPTY; NR_BUILTINS];
    let mut i = 0;
    while i < SCALARS.len() {
        let (oid, name, category, array) = SCALARS[i];
        t[i] = BuiltinType {
            oid: Oid(oid),
            name,
            category,
            elem: None,
        };
        t[SCALARS.len() + i] = BuiltinType {
            oid: Oid(array),
            name: ARRAY_NAMES[i],
            category,
            elem: Some(Oid(oid)),
        };
        i += 1;
    }
    // Insertion sort by OID (const context: no slice::sort).
    let mut i = 1;
    while i < NR_BUILTINS {
        let mut j = i;
        while j > 0 && t[j - 1].oid.0 > t[j].oid.0 {
            let tmp = t[j - 1];
            t[j - 1] = t[j];
            t[j] = tmp;
            j -= 1;
        }
        i += 1;
    }
    t
}

/// `typname` of each scalar's array type, in [`SCALARS`] order.
const ARRAY_NAMES: [&str; SCALARS.len()] = [
    "_bool",
    "_bytea",
    "_char",
    "_name",
    "_int8",
    "_int2",
    "_int4",
    "_text",
    "_oid",
    "_json",
    "_xml",
    "_cidr",
    "_float4",
    "_float8",
    "_macaddr8",
    "_money",
    "_macaddr",
    "_inet",
    "_bpchar",
    "_varchar",
    "_date",
    "_time",
    "_timestamp",
    "_timestamptz",
    "_interval",
    "_timetz",
    "_bit",
    "_varbit",
    "_numeric",
    "_uuid",
    "_jsonb",
];

/// The built-in type with this OID, if it is in the table.
pub fn builtin(oid: Oid) -> Option<&'static BuiltinType> {
    BUILTIN_TYPES
        .binary_search_by_key(&oid, |t| t.oid)
        .ok()
        .map(|i| &BUILTIN_TYPES[i])
}

/// One attribute of a composite type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeField {
    /// `pg_attribute.attname`.
    pub name: String,
    /// `pg_attribute.atttypid`.
    pub type_oid: Oid,
}

/// How a non-builtin type renders, as found in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeKind {
    /// A scalar rendered per [`Category`]: enums, ranges and other
    /// extension types are [`Category::String`].
    Scalar(Category),
    /// An array type (`typelem` = `elem`, elements separated by the element
    /// type's `typdelim`, `,` for nearly everything).
    Array {
        /// Element type.
        elem: Oid,
        /// Element delimiter in the text form.
        delim: u8,
    },
    /// A domain: rendered as its base type (`typbasetype`).
    Domain {
        /// The base type.
        base: Oid,
    },
    /// A composite (row) type: rendered as a JSON object of its live
    /// attributes, in attribute order (dropped attributes left out).
    Composite {
        /// The attributes.
        fields: Vec<CompositeField>,
    },
    /// A non-builtin type with a cast to `json` (PostGIS geometry, hstore):
    /// `to_jsonb` uses the cast, which only the database can run.
    CastToJson,
}

/// A resolved non-builtin type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// `pg_type.typname`, reported as `columns[].type`.
    pub name: String,
    /// How its values render.
    pub kind: TypeKind,
}

/// Answers for OIDs that are not in [`BUILTIN_TYPES`]. Lookups are
/// synchronous: the driver resolves [`unresolved`] OIDs (a catalog query)
/// before converting rows that use them.
pub trait TypeResolver {
    /// The type with this OID, or `None` if unknown.
    fn resolve(&self, oid: Oid) -> Option<&TypeInfo>;
}

/// A resolver that knows nothing beyond the built-in table.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinsOnly;

impl TypeResolver for BuiltinsOnly {
    fn resolve(&self, _oid: Oid) -> Option<&TypeInfo> {
        None
    }
}

/// A map of resolved types, filled by the caller.
#[derive(Debug, Clone, Default)]
pub struct TypeCache {
    /// Resolved non-builtin types by OID.
    types: HashMap<Oid, TypeInfo>,
}

impl TypeCache {
    /// An empty cache.
    pub fn new() -> TypeCache {
        TypeCache::default()
    }

    /// Records (or replaces) a resolved type.
    pub fn insert(&mut self, oid: Oid, info: TypeInfo) {
        self.types.insert(oid, info);
    }

    /// Forgets everything (types may have changed while disconnected).
    pub fn clear(&mut self) {
        self.types.clear();
    }

    /// Number of types held.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether no type is held.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

impl TypeResolver for TypeCache {
    fn resolve(&self, oid: Oid) -> Option<&TypeInfo> {
        self.types.get(&oid)
    }
}

/// `pg_type.typname` of a type: the built-in name or the resolver's.
pub fn type_name(oid: Oid, types: &dyn TypeResolver) -> Option<&str> {
    match builtin(oid) {
        Some(b) => Some(b.name),
        None => types.resolve(oid).map(|t| t.name.as_str()),
    }
}

/// A type's rendering, borrowed from the built-in table or the resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// A scalar.
    Scalar(Category),
    /// An array of `elem`.
    Array { elem: Oid, delim: u8 },
    /// A domain over `base`.
    Domain { base: Oid },
    /// A composite.
    Composite(&'a [CompositeField]),
    /// Needs the database's cast to json.
    CastToJson,
}

/// Looks `oid` up in the built-in table, then in the resolver.
pub(crate) fn kind(oid: Oid, types: &dyn TypeResolver) -> Option<Kind<'_>> {
    if let Some(b) = builtin(oid) {
        return Some(match b.elem {
            Some(elem) => Kind::Array { elem, delim: b',' },
            None => Kind::Scalar(b.category),
        });
    }
    Some(match &types.resolve(oid)?.kind {
        TypeKind::Scalar(c) => Kind::Scalar(*c),
        TypeKind::Array { elem, delim } => Kind::Array {
            elem: *elem,
            delim: *delim,
        },
        TypeKind::Domain { base } => Kind::Domain { base: *base },
        TypeKind::Composite { fields } => Kind::Composite(fields),
        TypeKind::CastToJson => Kind::CastToJson,
    })
}

/// The OIDs among `oids` (and the types they refer to: array elements,
/// domain bases, composite attributes) that neither the built-in table nor
/// `types` knows. Each OID is reported once, in discovery order.
pub fn unresolved(oids: impl IntoIterator<Item = Oid>, types: &dyn TypeResolver) -> Vec<Oid> {
    let mut missing = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<Oid> = oids.into_iter().collect();
    stack.reverse();
    while let Some(oid) = stack.pop() {
        if !seen.insert(oid) {
            continue;
        }
        match kind(oid, types) {
            None => missing.push(oid),
            Some(Kind::Array { elem, .. }) => stack.push(elem),
            Some(Kind::Domain { base }) => stack.push(base),
            Some(Kind::Composite(fields)) => {
                stack.extend(fields.iter().rev().map(|f| f.type_oid));
            }
            Some(Kind::Scalar(_) | Kind::CastToJson) => {}
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(BUILTIN_TYPES.windows(2).all(|w| w[0].oid < w[1].oid));
        for t in &BUILTIN_TYPES {
            assert_eq!(builtin(t.oid), Some(t));
            if let Some(elem) = t.elem {
                let e = builtin(elem).expect("element type in table");
                assert_eq!(t.name, format!("_{}", e.name));
                assert_eq!(t.category, e.category);
            }
        }
        assert_eq!(builtin(Oid(23)).unwrap().name, "int4");
        assert_eq!(builtin(Oid(1007)).unwrap().elem, Some(Oid(23)));
        assert_eq!(builtin(Oid(3802)).unwrap().category, Category::Jsonb);
        assert_eq!(builtin(Oid(1185)).unwrap().name, "_timestamptz");
        assert_eq!(builtin(Oid(0)), None);
        assert_eq!(builtin(Oid(16384)), None);
    }

    #[test]
    fn names_and_kinds_through_a_resolver() {
        let mut c = TypeCache::new();
        assert!(c.is_empty());
        c.insert(
            Oid(16390),
            TypeInfo {
                name: "mood".into(),
                kind: TypeKind::Scalar(Category::String),
            },
        );
        c.insert(
            Oid(16391),
            TypeInfo {
                name: "_mood".into(),
                kind: TypeKind::Array {
                    elem: Oid(16390),
                    delim: b',',
                },
            },
        );
        assert_eq!(c.len(), 2);
        assert_eq!(type_name(Oid(25), &c), Some("text"));
        assert_eq!(type_name(Oid(16391), &c), Some("_mood"));
        assert_eq!(type_name(Oid(99999), &c), None);
        assert_eq!(type_name(Oid(16390), &BuiltinsOnly), None);
        assert_eq!(
            kind(Oid(1009), &c),
            Some(Kind::Array {
                elem: Oid(25),
                delim: b','
            })
        );
        assert_eq!(kind(Oid(16390), &c), Some(Kind::Scalar(Category::String)));
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn unresolved_follows_references() {
        let mut c = TypeCache::new();
        c.insert(
            Oid(500),
            TypeInfo {
                name: "_dom".into(),
                kind: TypeKind::Array {
                    elem: Oid(501),
                    delim: b',',
                },
            },
        );
        c.insert(
            Oid(501),
            TypeInfo {
                name: "dom".into(),
                kind: TypeKind::Domain { base: Oid(502) },
            },
        );
        c.insert(
            Oid(600),
            TypeInfo {
                name: "pair".into(),
                kind: TypeKind::Composite {
                    fields: vec![
                        CompositeField {
                            name: "a".into(),
                            type_oid: Oid(23),
                        },
                        CompositeField {
                            name: "b".into(),
                            type_oid: Oid(601),
                        },
                    ],
                },
            },
        );
        let got = unresolved(
            [Oid(23), Oid(500), Oid(600), Oid(700), Oid(500), Oid(9)],
            &c,
        );
        assert_eq!(got, vec![Oid(502), Oid(601), Oid(9)]);
        assert!(unresolved([Oid(1007), Oid(3807)], &BuiltinsOnly).is_empty());
    }
}
