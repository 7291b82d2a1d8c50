//! Policy: reconciled facts become Cedar entities and requests; Cedar decides;
//! deny decisions become findings mapped to controls.
