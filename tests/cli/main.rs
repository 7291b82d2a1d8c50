//! CLI integration tests: one binary, one module per subcommand.

// `#[cfg(test)]` (always true here) marks the modules as test code for
// clippy's `allow-unwrap-in-tests`, which covers their helper functions too.
#[cfg(test)]
mod external;
#[cfg(test)]
mod formats;
#[cfg(test)]
mod keygen;
#[cfg(test)]
mod verify;
