//! What an import changes: the list read against the businesses imported before, as one
//! plan (`add`, `update` with each field's old and new value, `unchanged`, `remove`), computed
//! without I/O so `--dry-run` and the real import print the same lines.

use crate::config::Business;
use crate::store::ListedBusiness;
use std::collections::HashSet;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New, or back on the list after being archived.
    Add {
        id: String,
        was_archived: bool,
    },
    Update {
        id: String,
        fields: Vec<FieldChange>,
    },
    Unchanged {
        id: String,
    },
    /// Off the list (`--prune`): archived, its history kept.
    Remove {
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Add {
                id,
                was_archived: false,
            } => write!(f, "add {id}"),
            Change::Add {
                id,
                was_archived: true,
            } => write!(f, "add {id} (archived before: back on the list)"),
            Change::Unchanged { id } => write!(f, "unchanged {id}"),
            Change::Remove { id } => write!(f, "remove {id} (archived: its visits are kept)"),
            Change::Update { id, fields } => {
                write!(f, "update {id}")?;
                for (i, c) in fields.iter().enumerate() {
                    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(empty)".into());
                    write!(
                        f,
                        "{} {}: {} → {}",
                        if i == 0 { "" } else { ";" },
                        c.field,
                        shown(&c.old),
                        shown(&c.new)
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// The change, and the writes that make it.
#[derive(Debug, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Businesses to add or update.
    pub upsert: Vec<Business>,
    /// Ids to archive.
    pub archive: Vec<String>,
}

impl Plan {
    pub fn count(&self, what: fn(&Change) -> bool) -> usize {
        self.changes.iter().filter(|c| what(c)).count()
    }
}

/// `incoming` (the good rows, in file order) against `listed` (what the store holds).
/// With `prune`, listed businesses absent from the file are removed, except those in `keep`
/// (ids of rejected rows: a row that is on the list, only wrong, is not a removal).
pub fn plan(
    listed: &[ListedBusiness],
    incoming: Vec<Business>,
    prune: bool,
    keep: &HashSet<String>,
) -> Plan {
    let mut plan = Plan::default();
    let seen: HashSet<String> = incoming.iter().map(|b| b.id.clone()).collect();
    for b in incoming {
        match listed.iter().find(|l| l.business.id == b.id) {
            None => {
                plan.changes.push(Change::Add {
                    id: b.id.clone(),
                    was_archived: false,
                });
                plan.upsert.push(b);
            }
            Some(l) if l.archived_at.is_some() => {
                plan.changes.push(Change::Add {
                    id: b.id.clone(),
                    was_archived: true,
                });
                plan.upsert.push(b);
            }
            Some(l) => {
                let fields = differences(&l.business, &b);
                if fields.is_empty() {
                    plan.changes.push(Change::Unchanged { id: b.id.clone() });
                } else {
                    plan.changes.push(Change::Update {
                        id: b.id.clone(),
                        fields,
                    });
                    plan.upsert.push(b);
                }
            }
        }
    }
    if prune {
        for l in listed {
            let id = &l.business.id;
            if l.archived_at.is_none() && !seen.contains(id) && !keep.contains(id) {
                plan.changes.push(Change::Remove { id: id.clone() });
                plan.archive.push(id.clone());
            }
        }
    }
    plan
}

/// The fields that differ, in column order.
fn differences(old: &Business, new: &Business) -> Vec<FieldChange> {
    let values = |b: &Business| -> [(&'static str, Option<String>); 9] {
        [
            ("name", Some(b.name.clone())),
            ("group", b.group.clone()),
            ("email", b.email.clone()),
            ("phone", b.phone.clone()),
            ("timezone", Some(b.timezone.name().to_owned())),
            ("city", b.city.clone()),
            ("hours", b.hours_text.clone()),
            ("form_url", b.form_url.clone()),
            ("country", Some(b.country.clone())),
        ]
    };
    values(old)
        .into_iter()
        .zip(values(new))
        .filter(|((_, o), (_, n))| o != n)
        .map(|((field, old), (_, new))| FieldChange { field, old, new })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn business(id: &str, email: &str) -> Business {
        Business {
            id: id.into(),
            name: format!("Agence {id}"),
            group: None,
            email: Some(email.into()),
            phone: None,
            timezone: crate::config::DEFAULT_TIMEZONE,
            city: None,
            hours: None,
            hours_text: None,
            form_url: None,
            country: "FR".into(),
        }
    }

    fn listed(b: Business, archived: bool) -> ListedBusiness {
        ListedBusiness {
            business: b,
            archived_at: archived.then_some(1),
        }
    }

    #[test]
    fn a_list_against_the_store_is_adds_updates_unchanged_and_removes() {
        let store = [
            listed(business("a", "a@x.test"), false),
            listed(business("b", "b@x.test"), false),
            listed(business("c", "c@x.test"), false),
            listed(business("d", "d@x.test"), true),
            listed(business("e", "e@x.test"), false),
        ];
        let file = vec![
            business("a", "a@x.test"),
            business("b", "nouveau@x.test"),
            business("d", "d@x.test"),
            business("n", "n@x.test"),
        ];
        let keep = HashSet::from(["e".to_owned()]);
        let plan = plan(&store, file, true, &keep);
        let lines: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "unchanged a",
                "update b email: b@x.test → nouveau@x.test",
                "add d (archived before: back on the list)",
                "add n",
                "remove c (archived: its visits are kept)",
            ]
        );
        assert_eq!(
            plan.upsert
                .iter()
                .map(|b| b.id.as_str())
                .collect::<Vec<_>>(),
            ["b", "d", "n"]
        );
        assert_eq!(plan.archive, ["c"]);
    }

    #[test]
    fn without_prune_nothing_is_removed() {
        let store = [listed(business("c", "c@x.test"), false)];
        let plan = plan(&store, vec![], false, &HashSet::new());
        assert!(plan.changes.is_empty() && plan.archive.is_empty());
    }
}
