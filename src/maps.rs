//! Concurrent maps that grow with traffic.

use std::hash::Hash;

use dashmap::DashMap;

/// Shards of a map that grows with traffic (sessions, accepted message ids, the memory store's
/// users). A shard is a hash table that, when full, rehashes every entry it holds into one
/// twice its size, under its write lock; dashmap's default is 4 × cores shards (8 on 2 cores),
/// which fill evenly and so double together. Measured (load harness, issue 6): the memory
/// store's 230 k accepted ids doubled all eight shards within 200 ms, 20 MiB of fresh pages,
/// and the half-rate p99 of that window went from 3 to 15 ms. With 256 shards a doubling
/// copies 1/256 of the map. The empty shards cost a few KiB per map.
pub const GROWING_MAP_SHARDS: usize = 256;

/// An empty map for [`GROWING_MAP_SHARDS`].
pub fn growing<K: Eq + Hash, V>() -> DashMap<K, V> {
    DashMap::with_shard_amount(GROWING_MAP_SHARDS)
}
