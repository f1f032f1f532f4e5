/* Replacing a file atomically: readers see the old contents or the new,
 * never a mix, and after a crash one of the two is there, complete.
 *
 * The new contents go to a temp file beside the target, named
 * ".NAME.tmp.PID.RANDOM" and created O_EXCL|O_NOFOLLOW (so nothing planted
 * at that name is followed or reused); commit fsyncs it, renames it over
 * the target and fsyncs the directory.  A process killed mid-write leaves
 * its temp file behind: hkd_atomic_clean removes such orphans.
 * Errors are negative errno values. */
#ifndef HAKMEMD_ATOMIC_FILE_H
#define HAKMEMD_ATOMIC_FILE_H

#include <stddef.h>
#include <sys/types.h>

#define HKD_PATH_MAX 4096

typedef struct hkd_atomic_file {
    int fd;
    char path[HKD_PATH_MAX];
    char tmp[HKD_PATH_MAX];
} hkd_atomic_file;

/* Creates the temp file for path with mode (the umask applies). */
int  hkd_atomic_open(hkd_atomic_file *f, const char *path, mode_t mode);
int  hkd_atomic_write(hkd_atomic_file *f, const void *buf, size_t len);
/* Puts the file in place; on failure the temp file is removed.  Either
 * way f is finished. */
int  hkd_atomic_commit(hkd_atomic_file *f);
/* Drops the temp file; path is left as it was. */
void hkd_atomic_abort(hkd_atomic_file *f);

/* Removes temp files of path that no running process is writing: named
 * ".NAME.tmp.*", regular files (not followed), owned by our effective uid,
 * with a PID in the name that is ours or no longer runs.  Returns how many
 * were removed, or -errno when the directory cannot be read. */
int  hkd_atomic_clean(const char *path);

#endif
