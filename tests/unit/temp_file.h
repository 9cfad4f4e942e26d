/*
 * temp_file.h - the unit tests of file readers (configuration, password and
 * ACL files) write their input to a new temporary file. Include after
 * <cmocka.h>, <stdio.h>, <stdlib.h> and <unistd.h>.
 */
#ifndef SLUICE_TEST_TEMP_FILE_H
#define SLUICE_TEST_TEMP_FILE_H

/* len bytes of text in a new temporary file, whose name goes to path (pathlen bytes). */
static inline void temp_file_write(char *path, size_t pathlen, const void *text, size_t len)
{
	int fd;

	snprintf(path, pathlen, "/tmp/sluice-test-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

#endif
