"""The versioned store (design §4): configuration generations and module versions on btrfs."""
