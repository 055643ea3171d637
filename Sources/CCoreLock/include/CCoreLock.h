#ifndef CCORELOCK_H
#define CCORELOCK_H

/*
 * The one lock of the cluster logic (ClusterCore): a pthread mutex behind an opaque handle, so
 * that the logic needs neither the libuv layer nor an unsafe pointer of its own. (Not Swift's
 * `Synchronization.Mutex`: with Swift 6.3.1 on Linux the thread sanitizer reports false races
 * inside `Mutex.withLock`.)
 *
 * Ownership: a lock comes from `ccorelock_new` and is destroyed and freed by `ccorelock_free`,
 * once; the Swift `CoreLock` class holds one and frees it in its deinit.
 */

typedef struct ccorelock ccorelock;

/// A new, unlocked lock. Traps when out of memory.
ccorelock *ccorelock_new(void);

/// Destroys and frees a lock from `ccorelock_new` (not held).
void ccorelock_free(ccorelock *lock);

void ccorelock_lock(ccorelock *lock);
void ccorelock_unlock(ccorelock *lock);

#endif
