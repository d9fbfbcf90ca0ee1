//! What only the tenant database can decide about a batch of changes, and
//! its answers.
//!
//! Three kinds of facts come from the database:
//! - per table: whether row level security is on, and per role which
//!   columns it may select ([`TableAccess`]; cached by the driver for a
//!   short while, since neither change often);
//! - per filter and row: the verdict of a filter whose semantics are the
//!   database's (collations, patterns, regexes): [`Questions::exprs`];
//! - per row and claims group (role + `request.jwt.claims`): whether the
//!   policies let that group see the row ([`Questions::rows`]).
//!
//! The planner collects questions for a whole batch; the driver answers
//! them in one round trip; delivery reads the [`Answers`]. A question the
//! answers lack (a subscriber joined in between) counts as "no": nothing
//! is ever delivered that was not authorised.

use std::collections::HashMap;
use std::rc::Rc;

use crate::proto::pg::Oid;

/// The claims a subscription's rows are authorised with: the Postgres
/// role (the token's `role`) and the JSON text given to
/// `request.jwt.claims`. Subscriptions with equal claims form one group
/// and share one check per row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubClaims {
    /// `role`.
    pub role: String,
    /// Every claim, as JSON text.
    pub json: String,
}

/// A claims group by identity, for the maps of one batch: hashed and
/// compared by address (a registry shares one `Rc` per distinct claims),
/// and holding the `Rc` so that no other claims can take its address while
/// the key lives. Claims equal in value but not shared are separate groups:
/// asked twice, never confused.
#[derive(Debug, Clone)]
pub struct ClaimsKey(Rc<SubClaims>);

impl std::hash::Hash for ClaimsKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        Rc::as_ptr(&self.0).hash(h)
    }
}

impl PartialEq for ClaimsKey {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ClaimsKey {}

/// What the database says about one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableAccess {
    /// `pg_class.relrowsecurity`.
    pub rls: bool,
    /// Per role: per column of the replicated relation (in its order),
    /// whether the role may select it. A role missing here may select
    /// nothing.
    pub selectable: HashMap<String, Rc<[bool]>>,
    /// Per column of the replicated relation, its type as
    /// `atttypid::regtype` prints it (for filters the database evaluates;
    /// empty: use the type's name).
    pub column_types: Vec<String>,
}

impl TableAccess {
    /// Access for a table without row security whose every column anyone
    /// may select (databases with no grants to care about, and tests).
    pub fn open() -> TableAccess {
        TableAccess::default()
    }
}

/// Where table access comes from during planning and delivery.
pub trait AccessView {
    /// The table's access; `None`: unknown (treated as nothing selectable
    /// and row security on, so nothing leaks).
    fn table(&self, rel: Oid) -> Option<&TableAccess>;
}

/// Every table open to everyone: for tenants whose access is not checked
/// (tests and benches).
pub struct OpenAccess(TableAccess);

impl Default for OpenAccess {
    fn default() -> Self {
        OpenAccess(TableAccess::open())
    }
}

impl AccessView for OpenAccess {
    fn table(&self, _: Oid) -> Option<&TableAccess> {
        Some(&self.0)
    }
}

impl AccessView for HashMap<Oid, TableAccess> {
    fn table(&self, rel: Oid) -> Option<&TableAccess> {
        self.get(&rel)
    }
}

/// The column privileges `access` gives `role`: every column when the
/// table is open (no grants known), else the role's flags; `None` when the
/// table or the role is unknown (the subscription is skipped: nothing is
/// sent that was not authorised).
pub fn privileges_of<'a>(access: Option<&'a TableAccess>, role: &str) -> Option<Privileges<'a>> {
    let a = access?;
    if a.selectable.is_empty() && !a.rls {
        return Some(Privileges::All);
    }
    a.selectable.get(role).map(|p| Privileges::Some(p))
}

/// Column privileges of one role on one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privileges<'a> {
    /// Every column.
    All,
    /// Per column of the relation.
    Some(&'a [bool]),
}

impl<'a> Privileges<'a> {
    /// The flags, `None` for all.
    pub fn flags(self) -> Option<&'a [bool]> {
        match self {
            Privileges::All => None,
            Privileges::Some(p) => Some(p),
        }
    }
}

/// Questions about a batch (indices into the batch's changes).
#[derive(Debug, Default)]
pub struct Questions {
    /// Boolean SQL expressions with the row's values spliced in as
    /// literals, each asked once.
    pub exprs: Vec<String>,
    expr_index: HashMap<String, usize>,
    /// (change, claims group) pairs to check against the table's policies.
    pub rows: Vec<(usize, Rc<SubClaims>)>,
    row_index: HashMap<(usize, ClaimsKey), usize>,
}

impl Questions {
    /// Registers an expression; returns its index.
    pub fn expr(&mut self, sql: String) -> usize {
        if let Some(&i) = self.expr_index.get(&sql) {
            return i;
        }
        let i = self.exprs.len();
        self.expr_index.insert(sql.clone(), i);
        self.exprs.push(sql);
        i
    }

    /// Registers a row check; returns its index.
    pub fn row(&mut self, change: usize, claims: &Rc<SubClaims>) -> usize {
        let key = (change, ClaimsKey(claims.clone()));
        if let Some(&i) = self.row_index.get(&key) {
            return i;
        }
        let i = self.rows.len();
        self.row_index.insert(key, i);
        self.rows.push((change, claims.clone()));
        i
    }

    /// Whether nothing needs asking.
    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty() && self.rows.is_empty()
    }

    /// Answers with every question unanswered (all "no").
    pub fn unanswered(&self) -> Answers {
        Answers {
            exprs: HashMap::new(),
            rows: HashMap::new(),
        }
    }
}

/// The database's answers to [`Questions`].
#[derive(Debug, Default)]
pub struct Answers {
    exprs: HashMap<String, bool>,
    rows: HashMap<(usize, ClaimsKey), bool>,
}

impl Answers {
    /// Records the verdict of expression `i` of `q`.
    pub fn set_expr(&mut self, q: &Questions, i: usize, v: bool) {
        self.exprs.insert(q.exprs[i].clone(), v);
    }

    /// Records the verdict of row check `i` of `q`.
    pub fn set_row(&mut self, q: &Questions, i: usize, v: bool) {
        let (change, claims) = &q.rows[i];
        self.rows.insert((*change, ClaimsKey(claims.clone())), v);
    }

    /// The verdict on an expression (unasked: false).
    pub fn expr(&self, sql: &str) -> bool {
        self.exprs.get(sql).copied().unwrap_or(false)
    }

    /// Whether `claims` may see change `change` (unasked: false).
    pub fn row(&self, change: usize, claims: &Rc<SubClaims>) -> bool {
        self.rows
            .get(&(change, ClaimsKey(claims.clone())))
            .copied()
            .unwrap_or(false)
    }
}
