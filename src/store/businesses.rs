//! Businesses imported from branch lists (`mystery import`). A branch leaves the list by
//! being archived (`archived_at`), never deleted: its visits keep their history, reports show
//! it, and planning, which reads `imported_businesses`, skips it. A change is applied in one
//! transaction, so a failed import leaves the list as it was.

use super::Store;
use crate::config::Business;
use anyhow::Result;
use sqlx::any::AnyRow;
use sqlx::Row;

/// An imported business and, when it left the list, since when.
#[derive(Debug, Clone)]
pub struct ListedBusiness {
    pub business: Business,
    pub archived_at: Option<i64>,
}

const COLUMNS: &str =
    "id, name, group_id, email, phone, timezone, city, hours, form_url, country, archived_at";

impl Store {
    /// The imported businesses that are on the list (not archived), by id; rows that no longer
    /// validate are skipped with a warning.
    pub async fn imported_businesses(&self) -> Result<Vec<Business>> {
        Ok(self
            .listed_businesses()
            .await?
            .into_iter()
            .filter(|l| l.archived_at.is_none())
            .map(|l| l.business)
            .collect())
    }

    /// What the configuration's validation needs to know of the imported lists.
    pub async fn imported(&self) -> Result<crate::config::Imported> {
        let mut out = crate::config::Imported::default();
        for l in self.listed_businesses().await? {
            if l.archived_at.is_some() {
                out.archived.insert(l.business.id);
            } else {
                out.businesses.push(l.business);
            }
        }
        Ok(out)
    }

    /// Every imported business, archived ones included, by id.
    pub async fn listed_businesses(&self) -> Result<Vec<ListedBusiness>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM businesses ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            if let Some(listed) = listed(&r)? {
                out.push(listed);
            }
        }
        Ok(out)
    }

    /// Writes one import: every business of `upsert` added or updated (and back on the list if
    /// it was archived), every id of `archive` archived; all or nothing.
    pub async fn apply_branch_change(
        &self,
        upsert: &[Business],
        archive: &[String],
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for b in upsert {
            sqlx::query(
                "INSERT INTO businesses (id, name, group_id, email, phone, timezone, city, hours,
                   form_url, country, imported_at, archived_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                   group_id = excluded.group_id, email = excluded.email,
                   phone = excluded.phone, timezone = excluded.timezone, city = excluded.city,
                   hours = excluded.hours, form_url = excluded.form_url,
                   country = excluded.country, imported_at = excluded.imported_at,
                   archived_at = NULL",
            )
            .bind(&b.id)
            .bind(&b.name)
            .bind(b.group.clone())
            .bind(b.email.clone())
            .bind(b.phone.clone())
            .bind(b.timezone.name())
            .bind(b.city.clone())
            .bind(b.hours_text.clone())
            .bind(b.form_url.clone())
            .bind(&b.country)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        for id in archive {
            sqlx::query(
                "UPDATE businesses SET archived_at = $1 WHERE id = $2 AND archived_at IS NULL",
            )
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn listed(r: &AnyRow) -> Result<Option<ListedBusiness>> {
    let id: String = r.try_get("id")?;
    let tz: Option<String> = r.try_get("timezone")?;
    let hours_text: Option<String> = r.try_get("hours")?;
    let hours = match hours_text.as_deref().map(str::parse) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            tracing::warn!(business = %id, "imported business skipped: {e}");
            return Ok(None);
        }
    };
    let country: Option<String> = r.try_get("country")?;
    let business = Business {
        name: r.try_get("name")?,
        group: r.try_get("group_id")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        timezone: tz
            .and_then(|t| t.parse().ok())
            .unwrap_or(crate::config::DEFAULT_TIMEZONE),
        city: r.try_get("city")?,
        hours,
        hours_text,
        form_url: r.try_get("form_url")?,
        country: country.unwrap_or_else(|| crate::config::phone::DEFAULT_COUNTRY.to_owned()),
        id,
    };
    Ok(Some(ListedBusiness {
        business,
        archived_at: super::opt_i64(r, "archived_at")?,
    }))
}
