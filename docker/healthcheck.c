/*
 * palm-healthcheck: the container healthcheck for images without a shell.
 *
 *   palm-healthcheck [http://IPV4:PORT/PATH]   (default http://127.0.0.1:9090/readyz)
 *
 * Sends one HTTP/1.0 GET and exits 0 when the answer's status is 2xx, 1
 * otherwise (refused, timed out after 3 s, or any other status). The host
 * must be an IPv4 literal: a probe runs inside the container it checks, so
 * it never needs a resolver, and it stays a small static binary that works
 * in any image (docker/compose.yaml lends it to the third-party images that
 * ship no HTTP client). Built with `gcc -static` (docker/Dockerfile,
 * scripts/images/build.sh).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void fail(const char *what) {
  fprintf(stderr, "palm-healthcheck: %s\n", what);
  exit(1);
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : "http://127.0.0.1:9090/readyz";
  if (argc > 2 || strncmp(url, "http://", 7) != 0)
    fail("usage: palm-healthcheck [http://IPV4:PORT/PATH]");
  alarm(5); /* a hard stop whatever happens */

  char host[64];
  const char *rest = url + 7;
  const char *colon = strchr(rest, ':');
  const char *slash = strchr(rest, '/');
  if (slash == NULL) slash = rest + strlen(rest);
  const char *host_end = (colon != NULL && colon < slash) ? colon : slash;
  size_t host_len = (size_t)(host_end - rest);
  if (host_len == 0 || host_len >= sizeof host) fail("bad host");
  memcpy(host, rest, host_len);
  host[host_len] = '\0';
  long port = 80;
  if (host_end == colon) {
    char *end;
    port = strtol(colon + 1, &end, 10);
    if (end != slash || port <= 0 || port > 65535) fail("bad port");
  }
  const char *path = *slash ? slash : "/";

  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) fail("host must be an IPv4 address");

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket");
  struct timeval timeout = {3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) fail("connection refused or timed out");

  char request[1024];
  int length = snprintf(request, sizeof request,
                        "GET %s HTTP/1.0\r\nHost: %s:%ld\r\nUser-Agent: palm-healthcheck\r\n"
                        "Connection: close\r\n\r\n",
                        path, host, port);
  if (length < 0 || (size_t)length >= sizeof request) fail("path too long");
  if (write(fd, request, (size_t)length) != length) fail("write");

  /* "HTTP/1.x NNN": the status is bytes 9-11. */
  char head[16];
  size_t got = 0;
  while (got < 12) {
    ssize_t n = read(fd, head + got, 12 - got);
    if (n <= 0) fail("no answer");
    got += (size_t)n;
  }
  close(fd);
  head[12] = '\0';
  if (strncmp(head, "HTTP/1.", 7) != 0) fail("not an HTTP answer");
  int status = atoi(head + 9);
  if (status < 200 || status > 299) {
    fprintf(stderr, "palm-healthcheck: %s answered %d\n", url, status);
    return 1;
  }
  return 0;
}
