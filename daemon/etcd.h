/* A small client of etcd's v3 API through its gRPC-JSON gateway (HTTP
 * POSTs of JSON to /v3/kv/..., /v3/lease/...; keys and values travel in
 * base64), over libcurl with TLS when the endpoints are https.
 *
 * One thread uses a client at a time (the fleet's).  A request goes to the
 * endpoint that answered last; one that cannot be reached (or answers that
 * it is unavailable) is marked down and the next is tried, so a request
 * fails for want of etcd only when no endpoint answers.  Every answer is
 * bounded (HKD_ETCD_RESPONSE_MAX) and parsed as untrusted JSON.
 *
 * With a user, the client authenticates as that etcd user (name and
 * password for a token, /v3/auth/authenticate) before its first request
 * and again when etcd says the token is no longer valid: the gateway maps
 * no TLS client identity to a user (etcd 3.4 refuses gateway requests whose
 * client certificate carries a CommonName while auth is on), so a
 * certificate only opens the connection and the token says who asks.
 *
 * Errors are negative errno values, with the last one's text (one line)
 * from hkd_etcd_error(): -EHOSTUNREACH no endpoint answered, -EACCES etcd
 * refused the credentials or the permission, -ENOENT not found (a lease),
 * -EPROTO an answer that is not what the API says, -EFBIG an answer over
 * the bound, -EIO anything else etcd refused. */
#ifndef HAKMEMD_ETCD_H
#define HAKMEMD_ETCD_H

#include <stddef.h>
#include <stdint.h>

#define HKD_ETCD_ENDPOINTS_MAX 16
#define HKD_ETCD_URL_MAX 256
#define HKD_ETCD_RESPONSE_MAX (24u << 20)
#define HKD_ETCD_USER_MAX 128
#define HKD_ETCD_PASSWORD_MAX 256

typedef struct hkd_etcd_cfg {
    const char *endpoints;              /* URL[,URL...]: http:// or https:// */
    const char *cacert, *cert, *key;    /* PEM files; NULL: none */
    const char *user, *password;        /* an etcd user (NULL: none) and its password */
    uint32_t timeout_ms;                /* per request and endpoint */
} hkd_etcd_cfg;

typedef struct hkd_etcd hkd_etcd;

typedef struct hkd_etcd_endpoint {
    char url[HKD_ETCD_URL_MAX];
    int  up;                            /* its last request or health check succeeded */
    uint64_t checked_unix_ms;           /* when (0: never) */
    char error[160];                    /* why it is down */
} hkd_etcd_endpoint;

typedef struct hkd_etcd_kv {
    const uint8_t *key, *value;
    size_t key_len, value_len;
    int64_t mod_revision, lease;
} hkd_etcd_kv;

typedef struct hkd_etcd_range {
    int64_t revision;                   /* read at this revision (0: the latest) */
    int64_t min_mod_revision;           /* only keys changed since (0: all) */
    int keys_only;
    uint32_t limit;                     /* 0: no limit */
} hkd_etcd_range;

/* Checks the configuration (the URLs, the files readable): 0 and *out,
 * or -EINVAL with why. */
int  hkd_etcd_new(const hkd_etcd_cfg *cfg, hkd_etcd **out, char *why, size_t whylen);
void hkd_etcd_free(hkd_etcd *e);
const char *hkd_etcd_error(const hkd_etcd *e);
/* Request bytes sent so far (bodies). */
uint64_t hkd_etcd_bytes_sent(const hkd_etcd *e);

size_t hkd_etcd_endpoint_count(const hkd_etcd *e);
void hkd_etcd_endpoint_get(const hkd_etcd *e, size_t i, hkd_etcd_endpoint *out);
/* Asks every endpoint for /health, updating what each says; how many are up. */
int  hkd_etcd_check_health(hkd_etcd *e);

/* Keys in [key, end) (end NULL: key alone), fn once per key in order; the
 * store's revision in *revision and whether more keys follow the last in
 * *more.  fn's nonzero return ends the walk and is returned. */
int  hkd_etcd_get(hkd_etcd *e, const void *key, size_t klen, const void *end, size_t elen, const hkd_etcd_range *r,
                  int (*fn)(const hkd_etcd_kv *kv, void *arg), void *arg, int64_t *revision, int *more);
int  hkd_etcd_put(hkd_etcd *e, const void *key, size_t klen, const void *value, size_t vlen, int64_t lease);
int  hkd_etcd_delete(hkd_etcd *e, const void *key, size_t klen, const void *end, size_t elen);
int  hkd_etcd_lease_grant(hkd_etcd *e, int64_t ttl_s, int64_t *id);
/* The lease's remaining TTL in *ttl_s: 0 when it has expired or is unknown. */
int  hkd_etcd_lease_keepalive(hkd_etcd *e, int64_t id, int64_t *ttl_s);
int  hkd_etcd_lease_revoke(hkd_etcd *e, int64_t id);

/* The end of the range of every key that begins with prefix (into end,
 * which has room for plen bytes): its length, 0 for "to the last key". */
size_t hkd_etcd_prefix_end(const void *prefix, size_t plen, uint8_t *end);

#endif
