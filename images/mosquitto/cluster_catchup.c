/*
 * cluster_catchup: a persistent session lives on one broker, and the
 * bridges carry messages, not sessions. When a client's broker stops (a
 * SIGTERM, a rolling update, a drain, a scale-down, a kill, its node
 * lost), HAProxy sends the client to another broker, where it has no
 * session: what was published between its broker's last delivery and its
 * new subscription would be lost to it. Every broker gets every message
 * over the bridges, so the broker it lands on has those messages too:
 *
 *   - every broker keeps the messages it took in for the last
 *     minute (catchup_seconds, at most catchup_bytes);
 *   - every broker knows where each persistent session is (the
 *     directory: connects and disconnects gossiped over the bridges,
 *     versioned so that the newest wins everywhere), and when its broker
 *     was last heard;
 *   - a persistent client that connects with no session here (its
 *     session is elsewhere) and subscribes within a few seconds gets, for
 *     each filter, the kept messages that match it from the moment its
 *     session elsewhere stopped receiving (its disconnect there, or the
 *     last gossip of its broker) less a margin: delivered to it alone, at
 *     most its subscription's QoS, after this broker's ACL check;
 *   - the bridges of other brokers count as such clients: a bridge keeps
 *     no session on its parent, so a broker that restarts, or whose bridge
 *     moves to another parent when its parent stops, gets from the parent
 *     what was published while it was away (less what came from that very
 *     bridge), and passes it to its own subscribers' sessions.
 *
 * A message in the margin can arrive twice (QoS 1 is at least once); a
 * caught-up copy carries the message's properties (user properties,
 * content type, response topic, correlation data, payload format) but no
 * expiry interval, and never the retained flag. A session away for longer
 * than the keep gets the part that was kept.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mqtt_protocol.h>
#include <uthash.h>

#include "cluster_auth.h"
#include "cluster_catchup.h"

/* Message checks per catch-up step: a replay never holds the broker's
 * loop for long; what is left goes on at the next tick. */
#define CHECKS_PER_STEP 20000

/* Mosquitto 2.0's property list (lib/property_mosq.h): the broker exports
 * no reader of it to plugins, and this image pins the 2.0 series. */
struct mq_string {
	char *v;
	uint16_t len;
};
struct mq_property {
	struct mq_property *next;
	union {
		uint8_t i8;
		uint16_t i16;
		uint32_t i32;
		uint32_t varint;
		struct mq_string bin;
		struct mq_string s;
	} value;
	struct mq_string name;
	int32_t identifier;
	bool client_generated;
};

/* A kept property: one of the five a message carries across brokers. */
struct kprop {
	int id;
	uint8_t byte;
	char *name, *value;
	uint16_t nlen, vlen;
	struct kprop *next;
};

struct kept {
	double t;
	char *topic;
	void *payload;
	uint32_t len;
	int qos;
	const char *src; /* the bridge it came in on (interned), or NULL */
	struct kprop *props;
	size_t size;
};

struct job {
	char *id;
	const struct mosquitto *ctx;
	char *filter;
	char **skip;
	int nskip;
	uint64_t pos, end;
	int qos, sent;
	double from;
	struct job *next;
};

struct dentry {
	char *id;
	int home;
	uint64_t ver;
	bool online;
	double left;
	/* The session its client had on another broker, when it arrived here
	 * while the directory still said it was online there (prev_home >= 0,
	 * until dir_settle): that broker's '-' for it (prev_left) or silence
	 * tells when it stopped receiving; neither, that its connection there
	 * is half open. */
	int prev_home;
	uint64_t prev_ver;
	double prev_left, arrived;
	/* A catch-up here that its client left before it was done (the
	 * moment of the first message it did not get yet), or that waited
	 * for dir_settle: its next arrival here goes on with it. */
	double owed;
	UT_hash_handle hh;
};

static struct dentry *entry(const char *id, bool create);

static double keep_seconds, margin, born;
static size_t keep_bytes, bytes;
static struct kept **ring;
static size_t cap, head;
static uint64_t first_seq, next_seq;
static struct job *jobs;
static struct dentry *dir;
static char *out;
static size_t out_len, out_cap;
/* The ids of the bridges messages came in on: a cluster has few. */
#define MAX_SRCS 256
static char *srcs[MAX_SRCS];
static int nsrcs;

static const char *intern(const char *id)
{
	if(!id) return NULL;
	for(int i = 0; i < nsrcs; i++){
		if(!strcmp(srcs[i], id)) return srcs[i];
	}
	if(nsrcs == MAX_SRCS) return NULL;
	srcs[nsrcs] = mosquitto_strdup(id);
	return srcs[nsrcs] ? srcs[nsrcs++] : NULL;
}

bool catchup_on(void)
{
	return keep_seconds > 0;
}

void catchup_init(double keep, size_t kbytes, double m, double started)
{
	born = started;
	keep_seconds = keep;
	keep_bytes = kbytes;
	margin = m;
}

static void kprops_free(struct kprop *p)
{
	struct kprop *next;
	for(; p; p = next){
		next = p->next;
		mosquitto_free(p->name);
		mosquitto_free(p->value);
		mosquitto_free(p);
	}
}

static char *dup_n(const char *s, uint16_t n)
{
	char *d = mosquitto_malloc((size_t)n + 1);
	if(!d) return NULL;
	if(n) memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* props_keep copies the properties that cross brokers. */
static struct kprop *props_keep(const mosquitto_property *props, size_t *size)
{
	struct kprop *head_p = NULL, **tail = &head_p;
	for(const struct mq_property *p = (const struct mq_property *)props; p; p = p->next){
		struct kprop *k;
		if(p->identifier != MQTT_PROP_PAYLOAD_FORMAT_INDICATOR && p->identifier != MQTT_PROP_CONTENT_TYPE
				&& p->identifier != MQTT_PROP_RESPONSE_TOPIC && p->identifier != MQTT_PROP_CORRELATION_DATA
				&& p->identifier != MQTT_PROP_USER_PROPERTY){
			continue;
		}
		k = mosquitto_calloc(1, sizeof(*k));
		if(!k) break;
		k->id = p->identifier;
		if(p->identifier == MQTT_PROP_PAYLOAD_FORMAT_INDICATOR){
			k->byte = p->value.i8;
		}else{
			const struct mq_string *v = p->identifier == MQTT_PROP_CORRELATION_DATA ? &p->value.bin : &p->value.s;
			k->value = dup_n(v->v, v->len);
			k->vlen = v->len;
			if(p->identifier == MQTT_PROP_USER_PROPERTY){
				k->name = dup_n(p->name.v, p->name.len);
				k->nlen = p->name.len;
			}
			if(!k->value || (p->identifier == MQTT_PROP_USER_PROPERTY && !k->name)){
				kprops_free(k);
				break;
			}
		}
		*size += sizeof(*k) + k->nlen + k->vlen;
		*tail = k;
		tail = &k->next;
	}
	return head_p;
}

/* props_make builds a property list the broker takes ownership of. */
static mosquitto_property *props_make(const struct kprop *k)
{
	mosquitto_property *p = NULL;
	int rc = MOSQ_ERR_SUCCESS;
	for(; k && rc == MOSQ_ERR_SUCCESS; k = k->next){
		switch(k->id){
			case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
				rc = mosquitto_property_add_byte(&p, k->id, k->byte);
				break;
			case MQTT_PROP_CORRELATION_DATA:
				rc = mosquitto_property_add_binary(&p, k->id, k->value, k->vlen);
				break;
			case MQTT_PROP_USER_PROPERTY:
				rc = mosquitto_property_add_string_pair(&p, k->id, k->name, k->value);
				break;
			default:
				rc = mosquitto_property_add_string(&p, k->id, k->value);
		}
	}
	return p;
}

static void kept_free(struct kept *m)
{
	mosquitto_free(m->topic);
	mosquitto_free(m->payload);
	kprops_free(m->props);
	mosquitto_free(m);
}

static struct kept *at(uint64_t seq)
{
	return ring[(head + (size_t)(seq - first_seq)) % cap];
}

static void pop(void)
{
	struct kept *m = ring[head];
	bytes -= m->size;
	kept_free(m);
	ring[head] = NULL;
	head = (head + 1) % cap;
	first_seq++;
}

static void trim(double now)
{
	while(first_seq < next_seq && (at(first_seq)->t < now - keep_seconds || bytes > keep_bytes)){
		pop();
	}
}

static bool grow(void)
{
	size_t n = next_seq - first_seq, ncap = cap ? cap * 2 : 1024;
	struct kept **r = mosquitto_calloc(ncap, sizeof(*r));
	if(!r) return false;
	for(size_t i = 0; i < n; i++){
		r[i] = ring[(head + i) % cap];
	}
	mosquitto_free(ring);
	ring = r;
	cap = ncap;
	head = 0;
	return true;
}

void catchup_keep(const char *topic, const void *payload, uint32_t len, int qos, const mosquitto_property *props, const char *bridge, double now)
{
	struct kept *m;
	if(!catchup_on() || topic[0] == '$') return;
	trim(now);
	if(next_seq - first_seq == cap && !grow()) return;
	m = mosquitto_calloc(1, sizeof(*m));
	if(!m) return;
	m->t = now;
	m->qos = qos;
	m->src = intern(bridge);
	m->len = len;
	m->topic = mosquitto_strdup(topic);
	m->payload = mosquitto_malloc(len ? len : 1);
	if(!m->topic || !m->payload){
		kept_free(m);
		return;
	}
	if(len) memcpy(m->payload, payload, len);
	m->size = sizeof(*m) + strlen(topic) + len;
	m->props = props_keep(props, &m->size);
	ring[(head + (size_t)(next_seq - first_seq)) % cap] = m;
	next_seq++;
	bytes += m->size;
}

double catchup_last(const char *topic, const void *payload, uint32_t len)
{
	struct kept *m;
	if(next_seq == first_seq) return 0;
	m = at(next_seq - 1);
	if(m->len != len || strcmp(m->topic, topic) || (len && memcmp(m->payload, payload, len))) return 0;
	return m->t;
}

static void job_free(struct job *j)
{
	for(int i = 0; i < j->nskip; i++){
		mosquitto_free(j->skip[i]);
	}
	mosquitto_free(j->skip);
	mosquitto_free(j->filter);
	mosquitto_free(j->id);
	mosquitto_free(j);
}

static bool matches(const char *filter, const char *topic)
{
	bool r = false;
	return mosquitto_topic_matches_sub(filter, topic, &r) == MOSQ_ERR_SUCCESS && r;
}

/* step sends the next messages of a catch-up; true when it is done. */
static bool step(struct job *j, double now)
{
	int checks = 0;
	if(j->pos < first_seq) j->pos = first_seq; /* older ones were dropped */
	for(; j->pos < j->end && checks < CHECKS_PER_STEP; j->pos++, checks++){
		struct kept *m = at(j->pos);
		bool skip = (m->src && !strcmp(m->src, j->id)) || !matches(j->filter, m->topic);
		for(int i = 0; !skip && i < j->nskip; i++){
			skip = matches(j->skip[i], m->topic);
		}
		/* An offline session (no connection): Mosquitto checks each queued
		 * message against the ACL again when its client connects. */
		if(skip || (j->ctx && auth_acl(j->ctx, MOSQ_ACL_READ, m->topic) != MOSQ_ERR_SUCCESS)) continue;
		mosquitto_property *p = props_make(m->props);
		if(mosquitto_broker_publish_copy(j->id, m->topic, (int)m->len, m->payload, m->qos < j->qos ? m->qos : j->qos, false, p) == MOSQ_ERR_SUCCESS){
			j->sent++;
		}else{
			mosquitto_property_free_all(&p);
		}
	}
	if(j->pos < j->end) return false;
	if(j->ctx){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_shared: caught up %s on %s: %d messages of the last %.1f s (its session elsewhere stopped receiving then)",
				j->id, j->filter, j->sent, now - j->from);
	}else{
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_shared: queued for offline %s on %s: %d messages held back while this broker learnt where its client is",
				j->id, j->filter, j->sent);
	}
	return true;
}

static uint64_t first_at(double t)
{
	uint64_t lo = first_seq, hi = next_seq;
	while(lo < hi){
		uint64_t mid = lo + (hi - lo) / 2;
		if(at(mid)->t < t){
			lo = mid + 1;
		}else{
			hi = mid;
		}
	}
	return lo;
}

void catchup_start(const char *id, const struct mosquitto *ctx, const char *filter, int qos, double from, double now,
		const char *const *skip, int nskip)
{
	struct job *j, **p;
	if(!catchup_on()) return;
	trim(now);
	j = mosquitto_calloc(1, sizeof(*j));
	if(!j) return;
	j->id = mosquitto_strdup(id);
	j->filter = mosquitto_strdup(filter);
	j->skip = nskip ? mosquitto_calloc((size_t)nskip, sizeof(*j->skip)) : NULL;
	if(!j->id || !j->filter || (nskip && !j->skip)){
		job_free(j);
		return;
	}
	for(int i = 0; i < nskip; i++){
		j->skip[i] = mosquitto_strdup(skip[i]);
		if(!j->skip[i]){
			job_free(j);
			return;
		}
		j->nskip++;
	}
	j->ctx = ctx;
	j->qos = qos;
	j->from = from;
	j->pos = first_at(from);
	j->end = next_seq;
	/* The first step now: a small catch-up is queued before any live
	 * message of the new subscription. */
	if(step(j, now)){
		job_free(j);
		return;
	}
	for(p = &jobs; *p; p = &(*p)->next){
	}
	*p = j;
}

/* owe remembers where a catch-up stopped whose client left before it was
 * done: an arrival here goes on from there (dir_arrived). */
static void owe(struct job *j)
{
	struct dentry *e = entry(j->id, false);
	double t;
	if(j->pos < first_seq) j->pos = first_seq;
	if(!e || j->pos >= j->end) return;
	t = at(j->pos)->t;
	if(e->owed <= 0 || t < e->owed) e->owed = t;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_shared: catch-up of %s on %s stopped after %d messages: its connection ended (the rest when it is back here)",
			j->id, j->filter, j->sent);
}

void catchup_drop(const char *id)
{
	struct job **p = &jobs;
	while(*p){
		struct job *j = *p;
		if(!strcmp(j->id, id)){
			owe(j);
			*p = j->next;
			job_free(j);
		}else{
			p = &j->next;
		}
	}
}

void catchup_run(double now, bool (*live)(const char *id, const struct mosquitto *ctx))
{
	struct job **p = &jobs;
	while(*p){
		struct job *j = *p;
		bool gone = !live(j->id, j->ctx);
		if(gone) owe(j);
		if(gone || step(j, now)){
			*p = j->next;
			job_free(j);
		}else{
			p = &j->next;
		}
	}
	if(catchup_on()) trim(now);
}

void catchup_cleanup(void)
{
	struct dentry *e, *tmp;
	while(jobs){
		struct job *j = jobs;
		jobs = j->next;
		job_free(j);
	}
	while(first_seq < next_seq){
		pop();
	}
	mosquitto_free(ring);
	ring = NULL;
	cap = 0;
	HASH_ITER(hh, dir, e, tmp){
		HASH_DEL(dir, e);
		mosquitto_free(e->id);
		mosquitto_free(e);
	}
	mosquitto_free(out);
	out = NULL;
	out_len = out_cap = 0;
	for(int i = 0; i < nsrcs; i++){
		mosquitto_free(srcs[i]);
	}
	nsrcs = 0;
}

/* The directory's gossip: per change "+<version> <idlen>\n<id>" (online
 * on the sender) or "-<version> <idlen>\n<id>" (its connection there
 * ended). */
static void say(char op, uint64_t ver, const char *id)
{
	size_t n = strlen(id), need = out_len + n + 64;
	if(need > out_cap){
		size_t ncap = need * 2;
		char *b = mosquitto_realloc(out, ncap);
		if(!b) return;
		out = b;
		out_cap = ncap;
	}
	out_len += (size_t)sprintf(out + out_len, "%c%" PRIu64 " %zu\n", op, ver, n);
	memcpy(out + out_len, id, n);
	out_len += n;
}

char *dir_take(size_t *len)
{
	char *b = out;
	if(!out_len) return NULL;
	*len = out_len;
	out = NULL;
	out_len = out_cap = 0;
	return b;
}

static struct dentry *entry(const char *id, bool create)
{
	struct dentry *e;
	HASH_FIND_STR(dir, id, e);
	if(e || !create) return e;
	e = mosquitto_calloc(1, sizeof(*e));
	if(!e) return NULL;
	e->id = mosquitto_strdup(id);
	if(!e->id){
		mosquitto_free(e);
		return NULL;
	}
	e->home = -1;
	e->prev_home = -1;
	HASH_ADD_KEYPTR(hh, dir, e->id, strlen(e->id), e);
	return e;
}

/* next_ver is a session's next version: a hybrid logical clock in
 * milliseconds, above every version this broker knows of the session and
 * at least the wall clock. A client that moves faster than the gossip is
 * taken by a broker that has not heard of its last session yet (or that
 * restarted and knows none of it): the later taking still wins, as long as
 * the nodes' clocks agree to better than the move (Swarm needs them
 * synced). A counter made both brokers give the same version, and the
 * higher-numbered broker won whichever was newer. (A plugin from before
 * read versions as 32 bits: during an image upgrade it may order them
 * wrongly, as it did on its own.) */
static uint64_t next_ver(uint64_t known)
{
	struct timespec ts;
	uint64_t ms;
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	return ms > known ? ms : known + 1;
}

static void take_home(struct dentry *e, int self)
{
	e->ver = next_ver(e->ver);
	e->home = self;
	e->online = true;
	say('+', e->ver, e->id);
}

double dir_arrived(const char *id, int self, double now, const double *seen, double ttl, int via, double span)
{
	struct dentry *e = entry(id, true);
	double from = 0, stop, owed;
	if(!e) return 0;
	/* Back here while its catch-up still waited for dir_settle: the wait
	 * goes on from its first arrival. */
	if(via < 0 && e->home == self && e->prev_home >= 0){
		take_home(e, self);
		return DIR_SETTLING;
	}
	owed = e->owed;
	e->owed = 0;
	/* A client still online, the directory says, on another broker heard
	 * from: it left there just now (a move faster than the gossip), or
	 * that broker is stopping (its silence follows), or its connection
	 * there is half open (a path cut off: the client noticed by its
	 * keepalive, long after it stopped receiving). dir_settle tells. */
	e->prev_home = -1;
	if(via < 0 && e->home >= 0 && e->home != self && e->online && seen[e->home] > 0 && now - seen[e->home] <= ttl){
		e->prev_home = e->home;
		e->prev_ver = e->ver;
		e->prev_left = 0;
		e->arrived = now;
		e->owed = owed;
		take_home(e, self);
		return DIR_SETTLING;
	}
	/* Known: it had a session here or elsewhere that is gone (a bridge,
	 * whose session ends with its connection, or a broker that lost it). */
	if(e->home >= 0){
		if(e->online){
			/* Still online there: it stopped receiving just now (a move
			 * faster than the gossip), or when its broker was last heard. */
			stop = e->home != self && seen[e->home] > 0 && now - seen[e->home] > ttl ? seen[e->home] : now;
		}else if(e->home != self && via < 0){
			/* Gone from there: its broker said so when the connection
			 * ended, and that may be its keepalive running out on a half
			 * open connection, 1.5 keepalives after the client stopped
			 * receiving (a broker's plugin is not told why a client
			 * went). */
			stop = e->left - span;
		}else{
			stop = e->left;
		}
		/* A bridge whose broker was not heard here for a while: its old
		 * connection was half open (its node cut off, the bridge waiting
		 * out its keepalive) or its broker restarted elsewhere, and the
		 * directory still says online (here, or on a parent whose new
		 * task is heard again). Its broker got nothing from this side
		 * since it was last heard. */
		if(via >= 0 && via != self && seen[via] > 0 && now - seen[via] > ttl && seen[via] < stop) stop = seen[via];
		from = stop - margin;
	}else if(via >= 0 && now - born < keep_seconds){
		/* A bridge this broker has no record of, while it has run for
		 * less than the window kept: it restarted, and what it took in
		 * since, that bridge's broker may have missed (it was bridged
		 * nowhere, or its parent restarted too). Everything kept is
		 * replayed, less what came in over that bridge. (A broker up
		 * longer meets a new broker's bridge: nothing to replay.) */
		from = born - margin;
	}
	if(owed > 0 && (from <= 0 || owed < from)) from = owed;
	if(from > 0 && from < now - keep_seconds - margin) from = now - keep_seconds - margin;
	take_home(e, self);
	return from;
}

void dir_owe(const char *id, double t)
{
	struct dentry *e = entry(id, true);
	if(e && (e->owed <= 0 || t < e->owed)) e->owed = t;
}

double dir_take_owed(const char *id)
{
	struct dentry *e = entry(id, false);
	double t;
	if(!e || e->owed <= 0) return 0;
	t = e->owed;
	e->owed = 0;
	return t;
}

bool dir_owed(const char *id, int self)
{
	struct dentry *e = entry(id, false);
	return e && (e->owed > 0 || (e->home == self && e->prev_home >= 0));
}

bool dir_elsewhere(const char *id, int self)
{
	struct dentry *e = entry(id, false);
	return e && e->home >= 0 && e->home != self;
}

double dir_settle(const char *id, double now, const double *seen, double ttl, double wait, double span)
{
	struct dentry *e = entry(id, false);
	double stop, from;
	if(!e || e->prev_home < 0) return now - margin;
	if(e->prev_left > 0){
		stop = e->prev_left;
	}else if(seen[e->prev_home] > 0 && now - seen[e->prev_home] > ttl){
		stop = seen[e->prev_home];
	}else if(now - e->arrived >= wait){
		stop = e->arrived - span;
	}else{
		return 0;
	}
	e->prev_home = -1;
	from = stop - margin;
	if(e->owed > 0 && e->owed < from) from = e->owed;
	e->owed = 0;
	if(from < now - keep_seconds - margin) from = now - keep_seconds - margin;
	return from;
}

int dir_online_elsewhere(const char *id, int self)
{
	struct dentry *e = entry(id, false);
	return e && e->online && e->home >= 0 && e->home != self ? e->home : -1;
}

void dir_here(const char *id, int self)
{
	struct dentry *e = entry(id, true);
	if(e && (e->home != self || !e->online)) take_home(e, self);
}

void dir_left(const char *id, int self, double now)
{
	struct dentry *e = entry(id, false);
	if(!e || e->home != self || !e->online) return;
	e->online = false;
	e->left = now;
	say('-', e->ver, e->id);
}

void dir_announce(const char *id, int self)
{
	struct dentry *e = entry(id, false);
	if(e && e->home == self && e->online) say('+', e->ver, e->id);
}

void dir_read(int from, const char *buf, uint32_t len, double now)
{
	const char *p = buf, *end = buf + len;
	while(p < end){
		char line[48], op, *id;
		uint64_t ver;
		size_t n;
		struct dentry *e;
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if(!nl || nl - p >= (long)sizeof(line)) return;
		memcpy(line, p, (size_t)(nl - p));
		line[nl - p] = '\0';
		if(sscanf(line, "%c%" SCNu64 " %zu", &op, &ver, &n) != 3 || (op != '+' && op != '-')) return;
		p = nl + 1;
		if(n > (size_t)(end - p)) return;
		id = dup_n(p, (uint16_t)(n > 65535 ? 65535 : n));
		p += n;
		if(!id) return;
		e = entry(id, op == '+');
		mosquitto_free(id);
		if(!e) continue;
		if(op == '+'){
			/* The newest session wins, the same everywhere: the higher
			 * version, then the higher broker. */
			if(ver > e->ver || (ver == e->ver && from > e->home) || (ver == e->ver && from == e->home)){
				/* Its client is on that broker now: what this one owed
				 * it (or waited to learn) is that one's to give. The
				 * same '+' again (said again when that broker heard this
				 * one) counts too: the first may have come from before
				 * anything was owed (a bridge's queue from its outage). */
				e->owed = 0;
				if(e->home != from) e->prev_home = -1;
				e->ver = ver;
				e->home = from;
				e->online = true;
			}
		}else{
			if(e->prev_home == from && e->prev_ver == ver && e->prev_left <= 0) e->prev_left = now;
			if(e->home == from && e->ver == ver && e->online){
				e->online = false;
				e->left = now;
			}
		}
	}
}

void dir_sweep(double now, const double *seen, double ttl)
{
	struct dentry *e, *tmp;
	HASH_ITER(hh, dir, e, tmp){
		bool gone = e->home >= 0 && seen[e->home] > 0 && now - seen[e->home] > ttl + keep_seconds + margin;
		/* What is owed is kept as long as the messages are. */
		bool owes = e->owed > 0 && e->owed >= now - keep_seconds - margin;
		if(!owes && ((!e->online && now - e->left > keep_seconds + margin) || (e->online && gone))){
			HASH_DEL(dir, e);
			mosquitto_free(e->id);
			mosquitto_free(e);
		}
	}
}
