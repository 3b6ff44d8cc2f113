//! A bounded DNS record cache for mail-auth (`ResolverCache`): entries live until the
//! expiry mail-auth hands in (the record's DNS TTL), and the map never grows past its
//! capacity. Shared by every session; one mutex, held only for a map operation.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mail_auth::ResolverCache;

/// Longest we keep any record, whatever its TTL says (a day: keys and policies change).
const MAX_TTL: Duration = Duration::from_secs(86_400);

pub struct TtlCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    /// A cache of at most `capacity` entries (0 = caching off).
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            map: Mutex::new(HashMap::new()),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// (entries, hits, misses)
    pub fn stats(&self) -> (usize, u64, u64) {
        (
            self.lock().len(),
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.lock();
        let found = match map.get(name) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        };
        drop(map);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let now = Instant::now();
        if self.capacity == 0 || valid_until <= now {
            return;
        }
        let valid_until = valid_until.min(now + MAX_TTL);
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            // Full: drop what has expired; if that is not enough, drop an eighth (arbitrary
            // entries: cheap, and a dropped record is only one lookup away).
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= self.capacity {
                let victims: Vec<K> = map
                    .keys()
                    .take((self.capacity / 8).max(1))
                    .cloned()
                    .collect();
                for k in victims {
                    map.remove(&k);
                }
            }
        }
        map.insert(key, (value, valid_until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let c: TtlCache<Box<str>, u32> = TtlCache::new(16);
        let now = Instant::now();
        c.insert("a.".into(), 1, now + Duration::from_secs(60));
        c.insert("gone.".into(), 2, now - Duration::from_secs(1));
        assert_eq!(c.get("a."), Some(1));
        assert_eq!(c.get("gone."), None);
        for i in 0..100 {
            c.insert(format!("k{i}.").into(), i, now + Duration::from_secs(60));
        }
        assert!(c.stats().0 <= 16, "{:?}", c.stats());
        assert_eq!(c.get("k99."), Some(99), "the newest entry is kept");
        c.insert(
            "soon.".into(),
            7,
            Instant::now() + Duration::from_millis(30),
        );
        assert_eq!(c.get("soon."), Some(7));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(c.get("soon."), None, "TTL respected");
        assert_eq!(c.remove("k99."), Some(99));
    }
}
