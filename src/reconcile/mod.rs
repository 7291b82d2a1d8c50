//! Reconciliation: change lifecycles, effective access, drift, connector
//! health and snapshot freshness, computed from ingested records.
