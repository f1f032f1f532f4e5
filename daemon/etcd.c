/* etcd's v3 API through the gRPC-JSON gateway (etcd.h).
 *
 * Why the gateway: it is part of every etcd since 3.3 (/v3/ from 3.4), it
 * needs nothing but HTTP/1.1 and JSON, which libcurl and json-c (both
 * Debian packages, both long stable) give a C daemon, and it speaks the
 * same API as etcdctl: leases, ranges at a revision, puts.  A gRPC client
 * would bring a C++ runtime and HTTP/2 into the daemon for a link that
 * moves a few hundred kilobytes every few seconds.
 *
 * Answers come from the network: each is held to HKD_ETCD_RESPONSE_MAX
 * bytes as it arrives, parsed with a bounded nesting depth, and every
 * field is checked for its type; text from it is cleaned before it is
 * logged. */
#include "etcd.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#define JSON_DEPTH 8
#define CONNECT_TIMEOUT_MS 1000u
#define HKD_ETCD_TOKEN_MAX 512
#define GRPC_INVALID_ARGUMENT 3
#define GRPC_FAILED_PRECONDITION 9
#define GRPC_UNAUTHENTICATED 16

struct hkd_etcd {
    CURL *curl;
    struct curl_slist *headers;
    char *cacert, *cert, *key;
    char *user, *password;              /* NULL: no etcd user */
    char token[HKD_ETCD_TOKEN_MAX];     /* the user's, while etcd takes it ("": none yet) */
    int auth_off;                       /* etcd said its auth is not enabled: no token to send */
    int last_code;                      /* the gRPC code of the last refusal (-1: none) */
    uint32_t timeout_ms;
    size_t n, cur;                      /* endpoints, and the one that answered last */
    hkd_etcd_endpoint ep[HKD_ETCD_ENDPOINTS_MAX];
    uint64_t bytes_sent;
    int refused_tls;                    /* an endpoint refused this host's credentials (or it theirs) */
    char error[HKD_ETCD_URL_MAX + 256];
    char curl_error[CURL_ERROR_SIZE];
    /* the answer being received */
    char *buf;
    size_t len, cap;
    int too_big;
};

/* ---- base64 (RFC 4648, with padding: what the gateway reads and writes) ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

static void b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = b64[v >> 18];
        *out++ = b64[v >> 12 & 63];
        *out++ = b64[v >> 6 & 63];
        *out++ = b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        *out++ = b64[v >> 18];
        *out++ = b64[v >> 12 & 63];
        *out++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
        *out++ = '=';
    }
    *out = 0;
}

static int b64_value(int c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

/* Decodes n characters into out (room for n / 4 * 3): the length, or -1. */
static long b64_decode(const char *in, size_t n, uint8_t *out)
{
    if (n % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int pad = (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=');
        if (pad && i + 4 != n)
            return -1;
        int v[4];
        for (int k = 0; k < 4 - pad; k++)
            if ((v[k] = b64_value((unsigned char)in[i + k])) < 0)
                return -1;
        for (int k = 4 - pad; k < 4; k++)
            v[k] = 0;
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(x >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(x >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)x;
    }
    return (long)o;
}

/* ---- setting up ---- */

static uint64_t unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static int say(char *why, size_t whylen, const char *fmt, const char *arg)
{
    snprintf(why, whylen, fmt, arg);
    return -EINVAL;
}

static int copy_path(const char *path, char **out, char *why, size_t whylen)
{
    if (!path || !*path)
        return 0;
    if (access(path, R_OK) < 0)
        return say(why, whylen, "cannot read %s", path);
    return (*out = strdup(path)) ? 0 : -ENOMEM;
}

/* The request headers, with the user's token once there is one.  No
 * "Expect: 100-continue": a put waits for no interim answer. */
static int set_headers(hkd_etcd *e)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h && !curl_slist_append(h, "Expect:"))
        h = NULL;
    if (h && e->token[0]) {
        char line[HKD_ETCD_TOKEN_MAX + 32];
        snprintf(line, sizeof line, "Authorization: %s", e->token);
        if (!curl_slist_append(h, line))
            h = NULL;
    }
    if (!h)
        return -ENOMEM;
    curl_slist_free_all(e->headers);
    e->headers = h;
    return 0;
}

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static int copy_user(const hkd_etcd_cfg *cfg, hkd_etcd *e, char *why, size_t whylen)
{
    size_t ul = strlen(cfg->user), pl = cfg->password ? strlen(cfg->password) : 0;
    if (ul == 0 || ul > HKD_ETCD_USER_MAX || !printable(cfg->user))
        return say(why, whylen, "etcd user '%.80s' is not 1-128 printable characters", cfg->user);
    if (pl == 0 || pl > HKD_ETCD_PASSWORD_MAX)
        return say(why, whylen, "etcd user %.80s needs a password of 1-256 bytes", cfg->user);
    if (!(e->user = strdup(cfg->user)) || !(e->password = strdup(cfg->password)))
        return -ENOMEM;
    return 0;
}

int hkd_etcd_new(const hkd_etcd_cfg *cfg, hkd_etcd **out, char *why, size_t whylen)
{
    static int curl_ready;
    if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return say(why, whylen, "%s", "cannot set up libcurl");
    curl_ready = 1;
    hkd_etcd *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    int rc = 0;
    const char *s = cfg->endpoints ? cfg->endpoints : "";
    while (*s && rc == 0) {
        size_t n = strcspn(s, ",");
        if (e->n == HKD_ETCD_ENDPOINTS_MAX) {
            rc = say(why, whylen, "more than %s endpoints", "16");
        } else if (n == 0 || n >= HKD_ETCD_URL_MAX - 32 ||
                   (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)) {
            rc = say(why, whylen, "endpoint '%.200s' is not an http:// or https:// URL", s);
        } else {
            memcpy(e->ep[e->n].url, s, n);
            while (n > 0 && e->ep[e->n].url[n - 1] == '/')
                n--;
            e->ep[e->n].url[n] = 0;
            for (size_t k = 0; k < n && rc == 0; k++)
                if (!isgraph((unsigned char)e->ep[e->n].url[k]))
                    rc = say(why, whylen, "endpoint '%.200s' has a space or control character", s);
            e->n++;
        }
        s += strcspn(s, ",");
        s += *s == ',';
    }
    if (rc == 0 && e->n == 0)
        rc = say(why, whylen, "%s", "no endpoint given");
    if (rc == 0)
        rc = copy_path(cfg->cacert, &e->cacert, why, whylen);
    if (rc == 0)
        rc = copy_path(cfg->cert, &e->cert, why, whylen);
    if (rc == 0)
        rc = copy_path(cfg->key, &e->key, why, whylen);
    if (rc == 0 && !e->cert != !e->key)
        rc = say(why, whylen, "%s", "a client certificate needs its key, and a key its certificate");
    if (rc == 0 && cfg->user)
        rc = copy_user(cfg, e, why, whylen);
    if (rc == 0 && (!(e->curl = curl_easy_init()) || set_headers(e) < 0))
        rc = say(why, whylen, "%s", "cannot set up libcurl");
    if (rc < 0) {
        hkd_etcd_free(e);
        return rc;
    }
    e->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 2000;
    *out = e;
    return 0;
}

void hkd_etcd_free(hkd_etcd *e)
{
    if (!e)
        return;
    if (e->curl)
        curl_easy_cleanup(e->curl);
    curl_slist_free_all(e->headers);
    free(e->cacert), free(e->cert), free(e->key), free(e->buf), free(e->user);
    if (e->password) {
        explicit_bzero(e->password, strlen(e->password));
        free(e->password);
    }
    explicit_bzero(e->token, sizeof e->token);
    free(e);
}

const char *hkd_etcd_error(const hkd_etcd *e)
{
    return e->error;
}

uint64_t hkd_etcd_bytes_sent(const hkd_etcd *e)
{
    return e->bytes_sent;
}

size_t hkd_etcd_endpoint_count(const hkd_etcd *e)
{
    return e->n;
}

void hkd_etcd_endpoint_get(const hkd_etcd *e, size_t i, hkd_etcd_endpoint *out)
{
    *out = e->ep[i < e->n ? i : 0];
}

/* ---- one HTTP exchange ---- */

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    hkd_etcd *e = arg;
    size_t n = size * nmemb;
    if (n > HKD_ETCD_RESPONSE_MAX - e->len) {
        e->too_big = 1;
        return 0;                       /* ends the transfer */
    }
    if (e->len + n + 1 > e->cap) {
        size_t cap = e->cap ? e->cap : 4096;
        while (cap < e->len + n + 1)
            cap *= 2;
        char *b = realloc(e->buf, cap);
        if (!b)
            return 0;
        e->buf = b;
        e->cap = cap;
    }
    memcpy(e->buf + e->len, p, n);
    e->len += n;
    e->buf[e->len] = 0;
    return n;
}

/* Printable ASCII of what came from the network, for a log line. */
static void clean(char *dst, size_t cap, const char *src)
{
    size_t o = 0;
    for (; src && *src && o + 1 < cap; src++)
        dst[o++] = *src >= 0x20 && *src < 0x7f ? *src : '?';
    dst[o] = 0;
}

static void endpoint_result(hkd_etcd *e, size_t i, int up, const char *why)
{
    e->ep[i].up = up;
    e->ep[i].checked_unix_ms = unix_ms();
    clean(e->ep[i].error, sizeof e->ep[i].error, up ? "" : why);
}

enum { SENT, UNREACHED };

/* A TLS failure over credentials: ours refused by the member (an alert
 * during the handshake or the first read), or the member's not trusted by
 * our CA.  A member that is simply down refuses the connection instead. */
static int tls_refusal(CURLcode rc, const char *why)
{
    if (rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE)
        return 1;
    return (rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) &&
           (strstr(why, "alert") || strstr(why, "certificate"));
}

/* A request to endpoint i (body NULL: a GET).  SENT with the HTTP status
 * in *status and the answer in e->buf, or UNREACHED with why in e->error. */
static int exchange(hkd_etcd *e, size_t i, const char *path, const char *body, size_t blen, long *status)
{
    char url[HKD_ETCD_URL_MAX + 64];
    snprintf(url, sizeof url, "%s%s", e->ep[i].url, path);
    CURL *c = e->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);   /* the gateway, never gRPC */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(e->timeout_ms < CONNECT_TIMEOUT_MS ? e->timeout_ms : CONNECT_TIMEOUT_MS));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, e);
    if (e->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, e->cacert);
    if (e->cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, e->cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, e->key);
    }
    if (body) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    e->len = 0;
    e->too_big = 0;
    if (e->buf)
        e->buf[0] = 0;
    e->curl_error[0] = 0;
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, e->curl_error);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        char why[CURL_ERROR_SIZE];
        clean(why, sizeof why, e->curl_error[0] ? e->curl_error : curl_easy_strerror(rc));
        if (e->too_big)
            snprintf(why, sizeof why, "answer over %u bytes", HKD_ETCD_RESPONSE_MAX);
        snprintf(e->error, sizeof e->error, "%s: %.200s", e->ep[i].url, why);
        endpoint_result(e, i, 0, why);
        e->refused_tls |= tls_refusal(rc, why);
        return UNREACHED;
    }
    e->bytes_sent += blen;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    return SENT;
}

static json_object *parse(const char *buf, size_t len)
{
    if (!buf || len == 0 || len > HKD_ETCD_RESPONSE_MAX)
        return NULL;
    json_tokener *t = json_tokener_new_ex(JSON_DEPTH);
    if (!t)
        return NULL;
    json_object *o = json_tokener_parse_ex(t, buf, (int)len);
    if (o && json_tokener_get_error(t) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(t);
    if (o && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

/* The gateway's error answer: {"error": ..., "code": gRPC code, "message": ...}. */
static int refused(hkd_etcd *e, size_t i, long status)
{
    json_object *o = parse(e->buf, e->len), *m = NULL, *c = NULL;
    const char *msg = o && json_object_object_get_ex(o, "message", &m) && json_object_is_type(m, json_type_string)
                          ? json_object_get_string(m)
                          : "no message";
    int code = o && json_object_object_get_ex(o, "code", &c) && json_object_is_type(c, json_type_int)
                   ? json_object_get_int(c)
                   : -1;
    char text[160];
    clean(text, sizeof text, msg);
    snprintf(e->error, sizeof e->error, "%s: HTTP %ld: %s", e->ep[i].url, status, text);
    json_object_put(o);
    e->last_code = code;
    if (code == 5 || status == 404)
        return -ENOENT;
    if (code == 7 || code == GRPC_UNAUTHENTICATED || status == 401 || status == 403)
        return -EACCES;
    /* No user where auth is on, a wrong password, a certificate the
     * gateway will not take: etcd refusing who asks. */
    if (code == GRPC_INVALID_ARGUMENT &&
        (strstr(text, "user name is empty") || strstr(text, "authentication failed") || strstr(text, "CommonName")))
        return -EACCES;
    if (status == 400 && strstr(e->buf ? e->buf : "", "CommonName"))
        return -EACCES;
    return -EIO;
}

/* POSTs body to path on the endpoints in turn until one answers: 0 and
 * the parsed answer in *out, or -errno. */
static int call_once(hkd_etcd *e, const char *path, const char *body, size_t blen, json_object **out)
{
    *out = NULL;
    e->refused_tls = 0;
    e->last_code = -1;
    for (size_t k = 0; k < e->n; k++) {
        size_t i = (e->cur + k) % e->n;
        long status = 0;
        if (exchange(e, i, path, body, blen, &status) == UNREACHED)
            continue;
        /* Unavailable (no leader, a member cut off): another may serve. */
        if (status == 502 || status == 503 || status == 504) {
            refused(e, i, status);
            endpoint_result(e, i, 0, e->error);
            continue;
        }
        endpoint_result(e, i, 1, NULL);
        e->cur = i;
        if (status != 200)
            return refused(e, i, status);
        if (!(*out = parse(e->buf, e->len))) {
            snprintf(e->error, sizeof e->error, "%s%s: an answer that is not a JSON object", e->ep[i].url, path);
            return -EPROTO;
        }
        return 0;
    }
    return e->refused_tls ? -EACCES : -EHOSTUNREACH;
}

/* The user's token from /v3/auth/authenticate (the name and password go
 * as JSON strings, escaped by json-c). */
static int authenticate(hkd_etcd *e)
{
    json_object *req = json_object_new_object(), *o = NULL, *t;
    if (!req || json_object_object_add(req, "name", json_object_new_string(e->user)) < 0 ||
        json_object_object_add(req, "password", json_object_new_string(e->password)) < 0) {
        json_object_put(req);
        return -ENOMEM;
    }
    size_t blen;
    const char *body = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &blen);
    e->token[0] = 0;
    set_headers(e);
    int rc = body ? call_once(e, "/v3/auth/authenticate", body, blen, &o) : -ENOMEM;
    if (body)
        explicit_bzero((char *)body, blen);
    json_object_put(req);
    if (rc == -EIO && e->last_code == GRPC_FAILED_PRECONDITION && strstr(e->error, "not enabled")) {
        e->auth_off = 1;               /* etcd decides: without auth it takes every request */
        return 0;
    }
    if (rc == -EIO && e->last_code == GRPC_INVALID_ARGUMENT)
        rc = -EACCES;
    if (rc < 0)
        return rc;
    size_t n = 0;
    const char *tok = json_object_object_get_ex(o, "token", &t) && json_object_is_type(t, json_type_string)
                          ? json_object_get_string(t)
                          : NULL;
    if (tok)
        n = strlen(tok);
    if (!tok || n == 0 || n >= sizeof e->token || strcspn(tok, "\r\n") != n || !printable(tok)) {
        json_object_put(o);
        snprintf(e->error, sizeof e->error, "etcd user %.80s: an authenticate answer without a usable token",
                 e->user);
        return -EPROTO;
    }
    memcpy(e->token, tok, n + 1);
    json_object_put(o);
    e->auth_off = 0;
    return set_headers(e);
}

/* call_once as the user: authenticated first, and again once when etcd
 * no longer takes the token (it expired, or the member restarted). */
static int call(hkd_etcd *e, const char *path, const char *body, size_t blen, json_object **out)
{
    *out = NULL;
    int rc = e->user && !e->token[0] && !e->auth_off ? authenticate(e) : 0;
    if (rc == 0)
        rc = call_once(e, path, body, blen, out);
    if (rc == -EACCES && e->user && (e->last_code == GRPC_UNAUTHENTICATED ||
                                     (e->auth_off && e->last_code == GRPC_INVALID_ARGUMENT))) {
        rc = authenticate(e);
        if (rc == 0)
            rc = call_once(e, path, body, blen, out);
    }
    /* Who was refused, for the one line that says so. */
    if (rc == -EACCES && e->user) {
        char was[sizeof e->error];
        snprintf(was, sizeof was, "%s", e->error);
        snprintf(e->error, sizeof e->error, "etcd user %.80s: %.300s", e->user, was);
    }
    return rc;
}

int hkd_etcd_check_health(hkd_etcd *e)
{
    int up = 0;
    for (size_t i = 0; i < e->n; i++) {
        long status = 0;
        if (exchange(e, i, "/health", NULL, 0, &status) == UNREACHED)
            continue;
        json_object *o = status == 200 ? parse(e->buf, e->len) : NULL, *h;
        int ok = o && json_object_object_get_ex(o, "health", &h) && json_object_is_type(h, json_type_string) &&
                 strcmp(json_object_get_string(h), "true") == 0;
        json_object_put(o);
        endpoint_result(e, i, ok, "unhealthy");
        up += ok;
    }
    return up;
}

/* ---- fields of answers ---- */

/* An int64 field (the gateway writes them as strings); absent: 0. */
static int get_i64(json_object *o, const char *name, int64_t *v)
{
    json_object *f;
    *v = 0;
    if (!json_object_object_get_ex(o, name, &f))
        return 0;
    if (json_object_is_type(f, json_type_int)) {
        *v = json_object_get_int64(f);
        return 0;
    }
    if (!json_object_is_type(f, json_type_string))
        return -EPROTO;
    const char *s = json_object_get_string(f);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -EPROTO;
    *v = x;
    return 0;
}

static int64_t header_revision(json_object *o)
{
    json_object *h;
    int64_t rev = 0;
    if (json_object_object_get_ex(o, "header", &h) && json_object_is_type(h, json_type_object))
        get_i64(h, "revision", &rev);
    return rev;
}

/* A bytes field, decoded into *out (malloc'd; NULL and 0 when absent). */
static int get_bytes(json_object *o, const char *name, uint8_t **out, size_t *len)
{
    json_object *f;
    *out = NULL;
    *len = 0;
    if (!json_object_object_get_ex(o, name, &f))
        return 0;
    if (!json_object_is_type(f, json_type_string))
        return -EPROTO;
    size_t n = (size_t)json_object_get_string_len(f);
    uint8_t *b = malloc(n / 4 * 3 + 1);
    if (!b)
        return -ENOMEM;
    long got = b64_decode(json_object_get_string(f), n, b);
    if (got < 0) {
        free(b);
        return -EPROTO;
    }
    *out = b;
    *len = (size_t)got;
    return 0;
}

/* ---- requests ---- */

/* A JSON body: fields (already JSON) with up to two base64 fields first. */
typedef struct body {
    char *p;
    size_t len;
} body;

static int make_body(body *b, const char *n1, const void *v1, size_t l1, const char *n2, const void *v2, size_t l2,
                     const char *rest)
{
    size_t cap = 64 + b64_len(l1) + b64_len(l2) + strlen(rest);
    char *p = malloc(cap);
    if (!p)
        return -ENOMEM;
    size_t o = 0;
    p[o++] = '{';
    if (n1) {
        o += (size_t)snprintf(p + o, cap - o, "\"%s\":\"", n1);
        b64_encode(v1, l1, p + o);
        o += b64_len(l1);
        p[o++] = '"';
    }
    if (n2) {
        o += (size_t)snprintf(p + o, cap - o, ",\"%s\":\"", n2);
        b64_encode(v2, l2, p + o);
        o += b64_len(l2);
        p[o++] = '"';
    }
    o += (size_t)snprintf(p + o, cap - o, "%s%s}", n1 && *rest ? "," : "", rest);
    b->p = p;
    b->len = o;
    return 0;
}

static int post(hkd_etcd *e, const char *path, body *b, json_object **out)
{
    json_object *o = NULL;
    int rc = call(e, path, b->p, b->len, &o);
    free(b->p);
    if (out)
        *out = o;
    else
        json_object_put(o);
    return rc;
}

size_t hkd_etcd_prefix_end(const void *prefix, size_t plen, uint8_t *end)
{
    memcpy(end, prefix, plen);
    while (plen > 0) {
        if (end[plen - 1] < 0xff) {
            end[plen - 1]++;
            return plen;
        }
        plen--;
    }
    return 0;
}

static int each_kv(json_object *kv, int (*fn)(const hkd_etcd_kv *, void *), void *arg)
{
    if (!json_object_is_type(kv, json_type_object))
        return -EPROTO;
    hkd_etcd_kv x = { 0 };
    uint8_t *k = NULL, *v = NULL;
    int rc = get_bytes(kv, "key", &k, &x.key_len);
    if (rc == 0)
        rc = get_bytes(kv, "value", &v, &x.value_len);
    if (rc == 0)
        rc = get_i64(kv, "mod_revision", &x.mod_revision);
    if (rc == 0)
        rc = get_i64(kv, "lease", &x.lease);
    if (rc == 0 && !k)
        rc = -EPROTO;
    if (rc == 0) {
        x.key = k;
        x.value = v;
        rc = fn(&x, arg);
    }
    free(k);
    free(v);
    return rc;
}

int hkd_etcd_get(hkd_etcd *e, const void *key, size_t klen, const void *end, size_t elen, const hkd_etcd_range *r,
                 int (*fn)(const hkd_etcd_kv *kv, void *arg), void *arg, int64_t *revision, int *more)
{
    char rest[256];
    snprintf(rest, sizeof rest, "\"revision\":\"%" PRId64 "\",\"min_mod_revision\":\"%" PRId64 "\",\"limit\":\"%u\"%s",
             r->revision, r->min_mod_revision, r->limit, r->keys_only ? ",\"keys_only\":true" : "");
    body b;
    int rc = make_body(&b, "key", key, klen, end ? "range_end" : NULL, end, elen, rest);
    json_object *o = NULL, *kvs, *m;
    if (rc == 0)
        rc = post(e, "/v3/kv/range", &b, &o);
    if (rc < 0)
        return rc;
    *revision = header_revision(o);
    *more = json_object_object_get_ex(o, "more", &m) && json_object_get_boolean(m);
    if (json_object_object_get_ex(o, "kvs", &kvs)) {
        if (!json_object_is_type(kvs, json_type_array))
            rc = -EPROTO;
        size_t n = rc == 0 ? json_object_array_length(kvs) : 0;
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = each_kv(json_object_array_get_idx(kvs, i), fn, arg);
    }
    if (rc == -EPROTO)
        snprintf(e->error, sizeof e->error, "a range answer that is not what the API says");
    json_object_put(o);
    return rc;
}

int hkd_etcd_put(hkd_etcd *e, const void *key, size_t klen, const void *value, size_t vlen, int64_t lease)
{
    char rest[64];
    snprintf(rest, sizeof rest, "\"lease\":\"%" PRId64 "\"", lease);
    body b;
    int rc = make_body(&b, "key", key, klen, "value", value, vlen, rest);
    return rc < 0 ? rc : post(e, "/v3/kv/put", &b, NULL);
}

int hkd_etcd_delete(hkd_etcd *e, const void *key, size_t klen, const void *end, size_t elen)
{
    body b;
    int rc = make_body(&b, "key", key, klen, end ? "range_end" : NULL, end, elen, "");
    return rc < 0 ? rc : post(e, "/v3/kv/deleterange", &b, NULL);
}

int hkd_etcd_lease_grant(hkd_etcd *e, int64_t ttl_s, int64_t *id)
{
    char rest[64];
    snprintf(rest, sizeof rest, "\"TTL\":\"%" PRId64 "\"", ttl_s);
    body b;
    json_object *o = NULL;
    int rc = make_body(&b, NULL, NULL, 0, NULL, NULL, 0, rest);
    if (rc == 0)
        rc = post(e, "/v3/lease/grant", &b, &o);
    if (rc == 0 && (get_i64(o, "ID", id) < 0 || *id == 0)) {
        snprintf(e->error, sizeof e->error, "a lease grant without a lease");
        rc = -EPROTO;
    }
    json_object_put(o);
    return rc;
}

int hkd_etcd_lease_keepalive(hkd_etcd *e, int64_t id, int64_t *ttl_s)
{
    char rest[64];
    snprintf(rest, sizeof rest, "\"ID\":\"%" PRId64 "\"", id);
    body b;
    json_object *o = NULL, *res;
    int rc = make_body(&b, NULL, NULL, 0, NULL, NULL, 0, rest);
    if (rc == 0)
        rc = post(e, "/v3/lease/keepalive", &b, &o);
    *ttl_s = 0;
    /* A stream of one answer: {"result": {..., "TTL": "n"}}; no TTL, or 0,
     * for a lease etcd no longer has. */
    if (rc == 0 && json_object_object_get_ex(o, "result", &res) && json_object_is_type(res, json_type_object) &&
        get_i64(res, "TTL", ttl_s) < 0)
        rc = -EPROTO;
    json_object_put(o);
    return rc;
}

int hkd_etcd_lease_revoke(hkd_etcd *e, int64_t id)
{
    char rest[64];
    snprintf(rest, sizeof rest, "\"ID\":\"%" PRId64 "\"", id);
    body b;
    int rc = make_body(&b, NULL, NULL, 0, NULL, NULL, 0, rest);
    return rc < 0 ? rc : post(e, "/v3/lease/revoke", &b, NULL);
}
