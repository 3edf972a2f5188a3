//! A slab of values addressed by generational ids: a freed slot is reused, and an id
//! that outlived its value (a timer for a call already answered) no longer resolves.
//! This is how cancellation stays lazy and how stale events are told apart.

use std::marker::PhantomData;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Id {
    index: u32,
    generation: u32,
}

impl Id {
    /// The slot this id points at, for tables kept beside an arena (one entry per slot,
    /// overwritten when the slot is reused).
    #[inline]
    pub fn slot(self) -> usize {
        self.index as usize
    }

    /// (slot, generation): side tables keyed by id (the trace recorder's) index by slot.
    #[inline]
    pub(crate) fn parts(self) -> (u32, u32) {
        (self.index, self.generation)
    }
}

/// An arena's key: `Id` itself, or a newtype around it (`typed_id!`) that names the
/// arena it points into, so a delivery id cannot index the messages. A fiber's id
/// opens the fibers:
///
/// ```
/// use meshsim::model::arena::Arena;
/// use meshsim::model::world::FiberId;
/// fn waiting(fibers: &Arena<u32, FiberId>, f: FiberId) -> bool {
///     fibers.contains(f)
/// }
/// ```
///
/// and an attempt's id does not compile there:
///
/// ```compile_fail
/// use meshsim::model::arena::Arena;
/// use meshsim::model::world::{AttemptId, FiberId};
/// fn waiting(fibers: &Arena<u32, FiberId>, a: AttemptId) -> bool {
///     fibers.contains(a)
/// }
/// ```
pub trait Key: Copy {
    fn from_id(id: Id) -> Self;
    fn id(self) -> Id;
}

impl Key for Id {
    #[inline]
    fn from_id(id: Id) -> Id {
        id
    }
    #[inline]
    fn id(self) -> Id {
        self
    }
}

/// Declares a typed key for one arena.
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name($crate::model::arena::Id);

        impl $name {
            /// The slot this id points at, for tables kept beside its arena.
            #[allow(dead_code)]
            #[inline]
            pub fn slot(self) -> usize {
                self.0.slot()
            }
        }

        impl $crate::model::arena::Key for $name {
            #[inline]
            fn from_id(id: $crate::model::arena::Id) -> Self {
                $name(id)
            }
            #[inline]
            fn id(self) -> $crate::model::arena::Id {
                self.0
            }
        }
    };
}
pub(crate) use typed_id;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

pub struct Arena<T, K = Id> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
    key: PhantomData<K>,
}

impl<T, K> Default for Arena<T, K> {
    fn default() -> Self {
        Arena {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            key: PhantomData,
        }
    }
}

impl<T, K: Key> Arena<T, K> {
    /// The id the next `insert` returns (for values that must know each other's ids).
    #[inline]
    pub fn next_id(&self) -> K {
        K::from_id(match self.free.last() {
            Some(&index) => Id {
                index,
                generation: self.slots[index as usize].generation,
            },
            None => Id {
                index: u32::try_from(self.slots.len()).expect("more than 2^32 live entries"),
                generation: 0,
            },
        })
    }

    #[inline]
    pub fn insert(&mut self, value: T) -> K {
        self.live += 1;
        K::from_id(if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            assert!(slot.value.is_none());
            slot.value = Some(value);
            Id {
                index,
                generation: slot.generation,
            }
        } else {
            let index = u32::try_from(self.slots.len()).expect("more than 2^32 live entries");
            self.slots.push(Slot {
                generation: 0,
                value: Some(value),
            });
            Id {
                index,
                generation: 0,
            }
        })
    }

    #[inline]
    pub fn get(&self, key: K) -> Option<&T> {
        let id = key.id();
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation == id.generation {
            slot.value.as_ref()
        } else {
            None
        }
    }

    #[inline]
    pub fn get_mut(&mut self, key: K) -> Option<&mut T> {
        let id = key.id();
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation == id.generation {
            slot.value.as_mut()
        } else {
            None
        }
    }

    #[inline]
    pub fn contains(&self, key: K) -> bool {
        self.get(key).is_some()
    }

    #[inline]
    pub fn remove(&mut self, key: K) -> Option<T> {
        let id = key.id();
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
        Some(value)
    }

    /// Like `remove`, for when the value is not needed: dropped in place, not moved out.
    #[inline]
    pub fn discard(&mut self, key: K) -> bool {
        let id = key.id();
        let Some(slot) = self.slots.get_mut(id.index as usize) else {
            return false;
        };
        if slot.generation != id.generation || slot.value.is_none() {
            return false;
        }
        slot.value = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
        true
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Ids of the live values in slot order (deterministic).
    pub fn ids(&self) -> impl Iterator<Item = K> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value.as_ref().map(|_| {
                K::from_id(Id {
                    index: i as u32,
                    generation: s.generation,
                })
            })
        })
    }

    /// Live values in slot order (deterministic).
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.value.as_ref())
    }
}

impl<T, K: Key> std::ops::Index<K> for Arena<T, K> {
    type Output = T;
    fn index(&self, key: K) -> &T {
        self.get(key).expect("stale arena id")
    }
}

impl<T, K: Key> std::ops::IndexMut<K> for Arena<T, K> {
    fn index_mut(&mut self, key: K) -> &mut T {
        self.get_mut(key).expect("stale arena id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_do_not_resolve_after_reuse() {
        let mut a: Arena<&str> = Arena::default();
        let x = a.insert("x");
        assert_eq!(a.remove(x), Some("x"));
        let y = a.insert("y");
        assert_eq!(a.get(x), None, "the old id must not see the new value");
        assert_eq!(a.get(y), Some(&"y"));
        assert_eq!(a.remove(x), None);
        assert_eq!(a.len(), 1);
    }

    /// A request holds one call entry, one invocation and one fiber per hop in flight (a
    /// 400-hop chain holds 80,000 of each at once), so their size is the run's working
    /// set. Before calls and attempts shared an arena: a call slot of 160 bytes, an
    /// attempt of 56, an invocation of 144 plus 16 of lineage beside it, a fiber of 64
    /// (440 bytes in five places for a plain call's hop; now 264 in three).
    #[test]
    fn what_a_hop_holds_in_flight_stays_small() {
        use crate::model::client::Entry;
        use crate::model::world::{Event, Fiber, Invocation};
        use std::mem::size_of;
        let sizes = [
            size_of::<Slot<Entry>>(),
            size_of::<Slot<Invocation>>(),
            size_of::<Slot<Fiber>>(),
            size_of::<Event>(),
        ];
        eprintln!("slots: call or attempt, invocation, fiber; event: {sizes:?}");
        assert!(sizes[0] <= 72, "call slot {}", sizes[0]);
        assert!(sizes[1] <= 128, "invocation slot {}", sizes[1]);
        assert!(sizes[2] <= 64, "fiber slot {}", sizes[2]);
        assert!(sizes[3] <= 24, "event {}", sizes[3]);
    }
}
