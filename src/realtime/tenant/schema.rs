//! Where a tenant's `realtime` schema stands (kept by its home shard, see
//! `server::tenant_db`), and what a join that needs the schema hears while
//! it is not ready.

/// Where a tenant's schema stands, on its home shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// A run is under way (or waits to retry, see the error).
    Migrating {
        /// Why the last run failed, if one did.
        last_error: Option<String>,
    },
    /// Up to date.
    Ready,
}

impl SchemaState {
    /// The error a join that needs the schema gets while it is not ready,
    /// as the Elixir server words it: (log code, reason).
    pub fn join_error(&self) -> Option<(&'static str, &'static str)> {
        match self {
            SchemaState::Ready => None,
            SchemaState::Migrating { last_error: None } => Some((
                "InitializingProjectConnection",
                "Realtime is initializing the project connection",
            )),
            SchemaState::Migrating {
                last_error: Some(_),
            } => Some((
                "UnableToConnectToProject",
                "Realtime was unable to connect to the project database",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_hear_the_elixir_servers_words_until_ready() {
        let fresh = SchemaState::Migrating { last_error: None };
        let failed = SchemaState::Migrating {
            last_error: Some("x".into()),
        };
        assert_eq!(
            fresh.join_error().map(|e| e.0),
            Some("InitializingProjectConnection")
        );
        assert_eq!(
            failed.join_error().map(|e| e.1),
            Some("Realtime was unable to connect to the project database")
        );
        assert_eq!(SchemaState::Ready.join_error(), None);
    }
}
