//! CLI integration tests: one binary, one module per subcommand.

// `#[cfg(test)]` (always true here) marks the modules as test code for
// clippy's `allow-unwrap-in-tests`, which covers their helper functions too.
#[cfg(test)]
mod attest;
#[cfg(test)]
mod check;
#[cfg(test)]
mod external;
#[cfg(test)]
mod formats;
#[cfg(test)]
mod generate;
#[cfg(test)]
mod help;
#[cfg(test)]
mod keygen;
#[cfg(test)]
mod reconcile;
#[cfg(test)]
mod support;
#[cfg(test)]
mod verify;
