//! Pure restart decisions: how long to hold back the next start after a run ends.

use std::time::Duration;

/// A run shorter than this counts as a quick exit (runsv's own threshold).
pub const QUICK_RUN: Duration = Duration::from_secs(1);
/// The longest a crash-looping service waits between starts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// After a run that lasted `ran_for`, with `quick_exits` quick exits in a row before it:
/// the delay before the next start and the new count. A run of a second or more restarts at
/// once and forgets the loop; quick exits wait 1 s, 2 s, 4 s ... up to [`MAX_BACKOFF`].
pub fn after_exit(ran_for: Duration, quick_exits: u32) -> (Duration, u32) {
    if ran_for >= QUICK_RUN {
        return (Duration::ZERO, 0);
    }
    let count = quick_exits.saturating_add(1);
    let delay = QUICK_RUN
        .checked_mul(1u32.checked_shl(count - 1).unwrap_or(u32::MAX))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    (delay, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_table() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let table = [
            // (ran for, quick exits before) -> (delay, quick exits after)
            ((s(5), 0), (s(0), 0)),
            ((s(1), 7), (s(0), 0)),
            ((ms(999), 0), (s(1), 1)),
            ((ms(10), 1), (s(2), 2)),
            ((ms(10), 2), (s(4), 3)),
            ((ms(10), 3), (s(8), 4)),
            ((ms(10), 4), (s(16), 5)),
            ((ms(10), 5), (s(30), 6)),
            ((ms(10), 6), (s(30), 7)),
            ((ms(10), 40), (s(30), 41)),
            ((ms(10), u32::MAX), (s(30), u32::MAX)),
        ];
        for ((ran, before), want) in table {
            assert_eq!(
                after_exit(ran, before),
                want,
                "ran {ran:?} after {before} quick exits"
            );
        }
    }
}
