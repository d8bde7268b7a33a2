//! Which items an epoch visits, in which order.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::Dataset;

/// Domain tag so sampling streams never coincide with augmentation streams.
const SAMPLER_STREAM: u64 = 0x5341_4d50_4c45_5200;

/// The epoch's sequence of `(item index, augmentation key)`, `items_per_epoch`
/// long (0 = the dataset's size).
///
/// Unshuffled: items in order, cycled. Shuffled: a fresh permutation for every
/// pass over the data (passes beyond the first when `items_per_epoch` exceeds the
/// dataset). Balanced: each position draws a concept uniformly (by an item's first
/// concept), then the next item of that concept's own shuffled cycle. The key is
/// `occurrence * len + index`, distinct for every visit of an item in the epoch,
/// and is what seeds that visit's augmentation.
pub fn epoch_order(
    data: &Dataset,
    items_per_epoch: usize,
    seed: u64,
    epoch: u64,
    shuffle: bool,
    balanced: bool,
) -> Vec<(usize, u64)> {
    let n = data.items.len();
    if n == 0 {
        return Vec::new();
    }
    let total = if items_per_epoch == 0 {
        n
    } else {
        items_per_epoch
    };
    let mut seen = vec![0u64; n];
    let mut key = |i: usize| {
        let k = seen[i] * n as u64 + i as u64;
        seen[i] += 1;
        (i, k)
    };
    let mut rng = vct_augment::item_rng(seed ^ SAMPLER_STREAM, epoch, 0);
    if balanced {
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); data.concepts.len() + 1];
        for (i, it) in data.items.iter().enumerate() {
            groups[it.labels.first().copied().unwrap_or(data.concepts.len())].push(i);
        }
        groups.retain(|g| !g.is_empty());
        let mut cursors: Vec<usize> = groups.iter().map(Vec::len).collect();
        let mut out = Vec::with_capacity(total);
        for _ in 0..total {
            let g = rng.random_range(0..groups.len());
            if cursors[g] == groups[g].len() {
                groups[g].shuffle(&mut rng);
                cursors[g] = 0;
            }
            out.push(key(groups[g][cursors[g]]));
            cursors[g] += 1;
        }
        return out;
    }
    let mut out = Vec::with_capacity(total);
    let mut perm: Vec<usize> = (0..n).collect();
    while out.len() < total {
        if shuffle {
            perm.shuffle(&mut rng);
        }
        for &i in perm.iter().take(total - out.len()) {
            out.push(key(i));
        }
    }
    out
}
