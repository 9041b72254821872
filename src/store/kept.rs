//! What the tables the store keeps from `visits` by triggers (`rollups`, `day_counts`) share:
//! the condition that a change moves a row, and on PostgreSQL the trigger function and its two
//! triggers that append a visit's change to a deltas table.

/// An SQL condition, for an update trigger, true when any of `columns` differs between `OLD`
/// and `NEW` (`distinct`: `IS NOT` on SQLite, `IS DISTINCT FROM` on PostgreSQL, both NULL-safe).
pub(super) fn changed(columns: &[&str], distinct: &str) -> String {
    columns
        .iter()
        .map(|c| format!("OLD.{c} {distinct} NEW.{c}"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// PostgreSQL: the function `{name}_keep()`, which runs `old` (statements reading `OLD`) for
/// a deleted or changed row and `new` (reading `NEW`) for an inserted or changed one, and its
/// triggers on `visits`: `{name}_insert_delete`, and `{name}_update` only when `when` holds,
/// so the many updates that move nothing cost no call.
pub(super) fn pg_triggers(name: &str, old: &str, new: &str, when: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE FUNCTION {name}_keep() RETURNS trigger LANGUAGE plpgsql AS $body$
             BEGIN
               IF TG_OP <> 'INSERT' THEN {old}; END IF;
               IF TG_OP <> 'DELETE' THEN {new}; END IF;
               RETURN NULL;
             END
             $body$"
        ),
        format!(
            "CREATE TRIGGER {name}_insert_delete AFTER INSERT OR DELETE ON visits
             FOR EACH ROW EXECUTE FUNCTION {name}_keep()"
        ),
        format!(
            "CREATE TRIGGER {name}_update AFTER UPDATE ON visits
             FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}_keep()"
        ),
    ]
}
