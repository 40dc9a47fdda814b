//! The catalog: tables, their columns, primary keys, NOT NULL and DEFAULT.
//!
//! Stored durably under the SQL prefix (`codec::table_key`, one record per table),
//! with a catalog version that every DDL statement increments after changing a
//! record. Each core keeps its own [`CatalogCache`] (no sharing between cores); a
//! statement first reads the version (one point read on the key's owner) and reloads
//! the cache when it moved, so DDL that returned on one core is seen by the next
//! statement on any core.

use crate::codec;
use crate::config::{CATALOG_RELOAD_ATTEMPTS, SCAN_PAGE_BYTES, SCAN_PAGE_ROWS};
use crate::error::{SqlError, SqlResult};
use crate::exec::WorkBudget;
use crate::kv::{Kv, scan_all};
use crate::types::DataType;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: DataType,
    pub not_null: bool,
    /// The DEFAULT expression as SQL text (None: NULL).
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub id: u32,
    pub name: String,
    pub columns: Vec<Column>,
    /// Column positions of the primary key, in key order (empty: hidden row id).
    pub primary_key: Vec<usize>,
    /// Rows are keyed by a hidden row id (the table has no primary key).
    pub hidden_row_id: bool,
}

impl TableDef {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn types(&self) -> Vec<DataType> {
        self.columns.iter().map(|c| c.ty).collect()
    }

    /// The name PostgreSQL gives the primary key's constraint.
    pub fn primary_key_name(&self) -> String {
        format!("{}_pkey", self.name)
    }
}

/// One version of the catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    pub version: i64,
    pub tables: BTreeMap<String, Rc<TableDef>>,
}

impl Catalog {
    pub fn table(&self, name: &str) -> SqlResult<Rc<TableDef>> {
        self.tables
            .get(name)
            .cloned()
            .ok_or_else(|| SqlError::UndefinedTable(name.to_string()))
    }
}

/// A core's copy of the catalog.
#[derive(Debug, Default)]
pub struct CatalogCache {
    cached: RefCell<Option<Rc<Catalog>>>,
}

impl CatalogCache {
    /// The catalog as of now: the cached copy if its version is current, else a
    /// fresh load (retried while DDL elsewhere moves the version under it).
    pub async fn current<K: Kv>(&self, kv: &K) -> SqlResult<Rc<Catalog>> {
        let mut version = read_version(kv).await?;
        if let Some(c) = self
            .cached
            .borrow()
            .as_ref()
            .filter(|c| c.version == version)
        {
            return Ok(c.clone());
        }
        for _ in 0..CATALOG_RELOAD_ATTEMPTS {
            let tables = load_tables(kv).await?;
            let after = read_version(kv).await?;
            if after == version {
                let c = Rc::new(Catalog { version, tables });
                *self.cached.borrow_mut() = Some(c.clone());
                return Ok(c);
            }
            version = after;
        }
        Err(SqlError::Storage(crate::error::KvError(
            "the catalog kept changing while it was read; retry".into(),
        )))
    }
}

async fn read_version<K: Kv>(kv: &K) -> SqlResult<i64> {
    match kv.get(&codec::catalog_version_key()).await? {
        None => Ok(0),
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| SqlError::Corrupt("catalog version is not an integer".into())),
    }
}

async fn load_tables<K: Kv>(kv: &K) -> SqlResult<BTreeMap<String, Rc<TableDef>>> {
    let (start, end) = codec::table_range();
    let mut budget = WorkBudget::new();
    let mut tables = BTreeMap::new();
    for (_, v) in scan_all(kv, start, end, &mut budget).await? {
        let t = codec::decode_table(&v)?;
        tables.insert(t.name.clone(), Rc::new(t));
    }
    Ok(tables)
}

/// Stores a new table (its id is assigned here) and publishes the new catalog
/// version. Fails with 42P07 if the name is taken, checked atomically on the
/// record's key.
pub async fn create_table<K: Kv>(kv: &K, mut t: TableDef) -> SqlResult<()> {
    let id = kv.incr(codec::next_table_id_key(), 1).await?;
    t.id = u32::try_from(id)
        .map_err(|_| SqlError::ProgramLimitExceeded("table ids are exhausted".into()))?;
    let created = kv
        .cas(
            codec::table_key(&t.name),
            None,
            Some(codec::encode_table(&t)),
        )
        .await?;
    if !created {
        return Err(SqlError::DuplicateTable(t.name));
    }
    kv.incr(codec::catalog_version_key(), 1).await?;
    Ok(())
}

/// Removes a table's record, publishes the new catalog version, then deletes its
/// rows. Table ids are never reused, so rows a crash leaves behind are unreachable.
pub async fn drop_table<K: Kv>(kv: &K, t: &TableDef) -> SqlResult<()> {
    let key = codec::table_key(&t.name);
    let current = kv.get(&key).await?;
    let removed = match current {
        Some(bytes) => kv.cas(key, Some(bytes), None).await?,
        None => false,
    };
    if !removed {
        return Err(SqlError::UndefinedTable(t.name.clone()));
    }
    kv.incr(codec::catalog_version_key(), 1).await?;
    let (start, end) = codec::row_range(t.id);
    loop {
        let page = kv
            .scan(start.clone(), end.clone(), SCAN_PAGE_ROWS, SCAN_PAGE_BYTES)
            .await?;
        if page.entries.is_empty() {
            return Ok(());
        }
        for (k, _) in page.entries {
            kv.delete(k).await?;
        }
    }
}
