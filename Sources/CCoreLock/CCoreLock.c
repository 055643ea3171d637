#include "CCoreLock.h"

#include <pthread.h>
#include <stdlib.h>

struct ccorelock {
    pthread_mutex_t mutex;
};

ccorelock *ccorelock_new(void) {
    ccorelock *lock = malloc(sizeof *lock);
    if (lock == NULL || pthread_mutex_init(&lock->mutex, NULL) != 0) abort();
    return lock;
}

void ccorelock_free(ccorelock *lock) {
    pthread_mutex_destroy(&lock->mutex);
    free(lock);
}

void ccorelock_lock(ccorelock *lock) {
    if (pthread_mutex_lock(&lock->mutex) != 0) abort();
}

void ccorelock_unlock(ccorelock *lock) {
    if (pthread_mutex_unlock(&lock->mutex) != 0) abort();
}
