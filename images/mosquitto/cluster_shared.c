/*
 * cluster_shared: MQTT shared subscriptions delivered exactly once across
 * the bridged brokers of a swarm-mqtt-operator cluster (Mosquitto 2.0
 * plugin API, version 5).
 *
 * Every message reaches every broker over the bridges, and each broker
 * runs its own $share groups: a group with members on several brokers
 * would get one copy per broker. This plugin makes the brokers agree, for
 * each message and group, on the one broker that delivers it:
 *
 *   - each broker tracks its clients' subscriptions (ACL checks on
 *     SUBSCRIBE and UNSUBSCRIBE, connects and disconnects) and keeps them
 *     in a state file next to its persistence, for sessions that outlive a
 *     restart;
 *   - each broker publishes, on $cluster/shared/<broker index> (carried
 *     by the bridges, written and read only by the bridge user), how many
 *     online and offline members each group has on it: on every change and
 *     every 500 ms; a view not refreshed for 1.5 s is dropped (a dead
 *     broker, a lost bridge);
 *   - when Mosquitto hands a message to a group member (an ACL READ check
 *     for a client whose matching subscriptions are all shared), the broker
 *     picks the delivering broker from the same inputs everywhere: the
 *     brokers with online members of the group (else with any members),
 *     weighted by their member counts, by a hash of the topic and payload.
 *     Only the picked broker lets the delivery through; inside it Mosquitto
 *     round-robins over its members as usual.
 *
 * While views differ (a member joins or leaves, a broker or bridge fails)
 * a message can be delivered twice or not at all; the tests count it.
 * A client holding a normal and a shared subscription that both match a
 * topic gets its normal copy and may get a shared one on top.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <uthash.h>

#include "cluster_auth.h"
#include "cluster_catchup.h"

#define GOSSIP_PREFIX "$cluster/shared/"
#define MAX_BROKERS 64
#define GOSSIP_EVERY 0.5
#define VIEW_TTL 1.5
/* A spoke that (re)starts admits clients only once it has joined the tree
 * (another broker's gossip came over its bridge), or after this many
 * seconds alone. */
#define JOIN_GRACE 10.0
/* Catch-up (cluster_catchup.c): messages kept this long (and at most this
 * many bytes), replayed from this long before a moved session stopped
 * receiving, to subscriptions made this soon after the move. */
#define CATCHUP_SECONDS 60.0
#define CATCHUP_BYTES (64UL << 20)
#define CATCHUP_MARGIN 2.0
#define CATCHUP_GRACE 10.0
/* How long a catch-up waits to learn when a session still online on
 * another broker stopped receiving there: that broker's '-' comes within
 * a gossip round, its silence within VIEW_TTL. */
#define SETTLE_WAIT 3.0
/* Every broker says again which sessions it holds this often (and when
 * it hears a broker it had not heard). */
#define DIR_EVERY 30.0
/* After a start, how long the sessions restored here hold back what they
 * would queue (see learning): from the first other broker heard, or from
 * the start when none is heard within JOIN_GRACE. */
#define LEARN_SECONDS 5.0

struct sub {
	char *group; /* NULL: a normal subscription */
	char *filter;
	char *key;   /* a shared one's group_key, made once */
	int qos;     /* as subscribed (2 when read from the state file) */
	bool caught; /* caught up in this connection (cluster_catchup.c) */
	struct sub *next;
};

struct client {
	char *id;
	const struct mosquitto *ctx; /* the live connection, NULL offline */
	bool clean;
	/* A CONNECT seen (its password not checked yet): committed at the
	 * client's next event or at the next tick, dropped if the connection
	 * ends first. */
	const struct mosquitto *pending;
	bool pending_clean;
	bool reconnecting; /* between its CONNECT and the next tick */
	/* A persistent session new here whose client had one elsewhere: its
	 * subscriptions until catchup_until get what it missed since
	 * catchup_from (0: nothing to catch up). */
	double catchup_from, catchup_until;
	/* Arrived while its session elsewhere was still online there: the
	 * catch-up waits for dir_settle (at most SETTLE_WAIT). */
	bool settling;
	struct sub *subs;
	UT_hash_handle hh;
};

/* A group's members on one broker. key: group \x1f filter. */
struct count {
	char *key;
	int online, total;
	UT_hash_handle hh;
};

struct peer {
	double seen;
	struct count *counts;
};

static mosquitto_plugin_id_t *plugin_id;
static struct client *clients;
static struct count *mine;
static struct peer peers[MAX_BROKERS];
static int self = -1;
static char *bridge_user;
static char *state_file;
static bool gossip_dirty = true, state_dirty, connects, counts_dirty;
static int settling; /* clients whose catch-up waits for dir_settle (at most) */
static double last_gossip, last_state, last_recount;
static double started, join_grace = JOIN_GRACE;
static bool has_joined, join_gate_logged;
static double heard_at; /* when another broker was first heard */
static double held_at; /* when learning first held a message back */
static double keep_window; /* catch-up: seconds of messages kept */
static bool learnt;
static bool dir_due = true;
static double last_dir, last_sweep;

static void dir_tick(double t);

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *group_key(const char *group, const char *filter)
{
	size_t g = strlen(group), f = strlen(filter);
	char *k = mosquitto_malloc(g + f + 2);
	if(!k) return NULL;
	memcpy(k, group, g);
	k[g] = '\x1f';
	memcpy(k + g + 1, filter, f + 1);
	return k;
}

static void counts_free(struct count **h)
{
	struct count *c, *tmp;
	HASH_ITER(hh, *h, c, tmp){
		HASH_DEL(*h, c);
		mosquitto_free(c->key);
		mosquitto_free(c);
	}
}

/* recount rebuilds this broker's counts from its clients. */
static void recount(void)
{
	struct client *c, *tmp;
	struct sub *s;
	struct count *n;
	char *k;

	counts_free(&mine);
	HASH_ITER(hh, clients, c, tmp){
		for(s = c->subs; s; s = s->next){
			if(!s->key) continue;
			k = mosquitto_strdup(s->key);
			if(!k) continue;
			HASH_FIND_STR(mine, k, n);
			if(n){
				mosquitto_free(k);
			}else{
				n = mosquitto_calloc(1, sizeof(*n));
				if(!n){
					mosquitto_free(k);
					continue;
				}
				n->key = k;
				HASH_ADD_KEYPTR(hh, mine, n->key, strlen(n->key), n);
			}
			n->total++;
			if(c->ctx) n->online++;
		}
	}
	gossip_dirty = true;
}

static void subs_free(struct sub *s)
{
	struct sub *next;
	for(; s; s = next){
		next = s->next;
		mosquitto_free(s->group);
		mosquitto_free(s->filter);
		mosquitto_free(s->key);
		mosquitto_free(s);
	}
}

static struct client *client_get(const char *id, bool create)
{
	struct client *c;
	HASH_FIND_STR(clients, id, c);
	if(c || !create) return c;
	c = mosquitto_calloc(1, sizeof(*c));
	if(!c) return NULL;
	c->id = mosquitto_strdup(id);
	if(!c->id){
		mosquitto_free(c);
		return NULL;
	}
	HASH_ADD_KEYPTR(hh, clients, c->id, strlen(c->id), c);
	return c;
}

static void client_del(struct client *c)
{
	HASH_DEL(clients, c);
	subs_free(c->subs);
	mosquitto_free(c->id);
	mosquitto_free(c);
}

/* sub_set adds or removes one subscription of a client. */
static void sub_set(struct client *c, const char *group, const char *filter, bool add)
{
	struct sub **p, *s;
	for(p = &c->subs; *p; p = &(*p)->next){
		s = *p;
		if(!strcmp(s->filter, filter) && ((!s->group && !group) || (s->group && group && !strcmp(s->group, group)))){
			if(!add){
				*p = s->next;
				s->next = NULL;
				subs_free(s);
			}
			return;
		}
	}
	if(!add) return;
	s = mosquitto_calloc(1, sizeof(*s));
	if(!s) return;
	s->filter = mosquitto_strdup(filter);
	s->qos = 2;
	s->group = group ? mosquitto_strdup(group) : NULL;
	s->key = group ? group_key(group, filter) : NULL;
	s->next = c->subs;
	c->subs = s;
}

/* split_share parses $share/<group>/<filter>. */
static bool split_share(const char *topic, char **group, const char **filter)
{
	const char *g, *slash;
	if(strncmp(topic, "$share/", 7)) return false;
	g = topic + 7;
	slash = strchr(g, '/');
	if(!slash || slash == g) return false;
	*group = mosquitto_malloc((size_t)(slash - g) + 1);
	if(!*group) return false;
	memcpy(*group, g, (size_t)(slash - g));
	(*group)[slash - g] = '\0';
	*filter = slash + 1;
	return true;
}

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for(size_t i = 0; i < len; i++){
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static int count_of(struct count *h, const char *key, bool online)
{
	struct count *n;
	HASH_FIND_STR(h, key, n);
	if(!n) return 0;
	return online ? n->online : n->total;
}

/* deliverer picks the broker that delivers a message to a group (key:
 * its group_key). It runs at every shared delivery: no allocation. */
static int deliverer(const char *key, const char *topic, const void *payload, uint32_t len)
{
	int w[MAX_BROKERS];
	long total = 0;
	double t = now();
	for(int pass = 0; pass < 2 && total == 0; pass++){
		bool online = pass == 0;
		for(int i = 0; i < MAX_BROKERS; i++){
			if(i == self){
				w[i] = count_of(mine, key, online);
			}else if(peers[i].seen > 0 && t - peers[i].seen <= VIEW_TTL){
				w[i] = count_of(peers[i].counts, key, online);
			}else{
				w[i] = 0;
			}
			total += w[i];
		}
	}
	if(total == 0) return self;
	uint64_t h = fnv(14695981039346656037ULL, topic, strlen(topic));
	h = fnv(h, payload, len);
	long r = (long)(h % (uint64_t)total);
	for(int i = 0; i < MAX_BROKERS; i++){
		if(r < w[i]) return i;
		r -= w[i];
	}
	return self;
}

static bool is_bridge(const struct mosquitto *client)
{
	const char *u = mosquitto_client_username(client);
	return u && bridge_user && !strcmp(u, bridge_user);
}

/* bridge_broker: the index of the broker whose bridge's client id is id
 * (<cluster>-broker-N-bridge, the operator's remote_clientid), or -1. */
static int bridge_broker(const char *id)
{
	static const char suffix[] = "-bridge";
	size_t n = strlen(id), k;
	int i = 0;
	if(n < sizeof(suffix) || strcmp(id + n - (sizeof(suffix) - 1), suffix)) return -1;
	n -= sizeof(suffix) - 1;
	k = n;
	while(k > 0 && id[k - 1] >= '0' && id[k - 1] <= '9') k--;
	if(k == n || n - k > 2 || k == 0 || id[k - 1] != '-') return -1;
	for(size_t j = k; j < n; j++) i = i * 10 + (id[j] - '0');
	return i < MAX_BROKERS ? i : -1;
}

static bool matches(const char *filter, const char *topic)
{
	bool r = false;
	return mosquitto_topic_matches_sub(filter, topic, &r) == MOSQ_ERR_SUCCESS && r;
}

/* commit makes a client's pending CONNECT its session: a clean start (or
 * a takeover of a session that ended with its connection) starts with no
 * subscriptions. */
static void catch_up(struct client *c, const struct mosquitto *ctx, const char *filter, int qos);

static void commit(struct client *c)
{
	bool bridge, restored;
	if(!c->pending) return;
	if(c->pending_clean || (c->clean && c->ctx == NULL)){
		subs_free(c->subs);
		c->subs = NULL;
	}
	c->ctx = c->pending;
	c->clean = c->pending_clean;
	c->pending = NULL;
	counts_dirty = true;
	state_dirty = true;
	c->catchup_from = 0;
	c->settling = false;
	/* A takeover: the catch-up of the connection it replaces is owed to
	 * this one (dir_owed). */
	catchup_drop(c->id);
	/* Persistent sessions, and the bridges of other brokers: a bridge
	 * keeps no session on its parent (cleansession), and what it missed
	 * while it moved or its broker restarted is what that broker's
	 * subscribers missed. */
	for(struct sub *s = c->subs; s; s = s->next){
		s->caught = false;
	}
	bridge = is_bridge(c->ctx);
	if((c->clean && !bridge) || !catchup_on()) return;
	/* A session restored here has its subscriptions before the first
	 * SUBSCRIBE; a new one has none (and what this plugin kept of an
	 * older one is gone with it). */
	restored = mosquitto_client_sub_count(c->ctx) > 0;
	if(!restored && !bridge && c->subs){
		subs_free(c->subs);
		c->subs = NULL;
	}
	/* Caught up: a session new here, a bridge (no session kept), and a
	 * session left here while its client was on another broker since
	 * (its queue here may have dropped the newest past
	 * max_queued_messages). */
	if(bridge || !restored || dir_elsewhere(c->id, self) || dir_owed(c->id, self)){
		double seen[MAX_BROKERS], t = now();
		for(int i = 0; i < MAX_BROKERS; i++){
			seen[i] = peers[i].seen;
		}
		int ka = mosquitto_client_keepalive(c->ctx);
		double span = ka > 0 ? 1.5 * ka : 1e9; /* no keepalive: the whole keep */
		c->catchup_from = dir_arrived(c->id, self, t, seen, VIEW_TTL, bridge ? bridge_broker(c->id) : -1, bridge ? 0 : span);
		c->catchup_until = t + CATCHUP_GRACE;
		if(c->catchup_from == DIR_SETTLING){
			c->catchup_from = 0;
			c->settling = true;
			settling++;
			return;
		}
		/* A restored session's subscriptions are caught up at once: its
		 * client need not subscribe again. */
		for(struct sub *s = c->subs; restored && s; s = s->next){
			if(!s->group) catch_up(c, c->ctx, s->filter, s->qos);
		}
	}else{
		dir_here(c->id, self);
	}
}

/* catch_up starts a moved session's catch-up for a filter it subscribed
 * to (its other filters are caught up on their own). */
static void catch_up(struct client *c, const struct mosquitto *ctx, const char *filter, int qos)
{
	const char *skip[64];
	struct sub *mine = NULL;
	int n = 0;
	double t = now();
	if(c->catchup_from <= 0 || t > c->catchup_until || c->ctx != ctx) return;
	for(struct sub *s = c->subs; s; s = s->next){
		if(s->group) continue;
		if(!strcmp(s->filter, filter)){
			mine = s;
		}else if(s->caught && n < 64){
			skip[n++] = s->filter;
		}
	}
	if(!mine || mine->caught) return;
	mine->caught = true;
	catchup_start(c->id, ctx, filter, qos, c->catchup_from, t, skip, n);
}

/* catch_up_subs starts a session's catch-up from from on every normal
 * subscription it has (connection ctx; NULL: its offline session). */
static void catch_up_subs(struct client *c, const struct mosquitto *ctx, double from, double t)
{
	c->catchup_from = from;
	c->catchup_until = t + CATCHUP_GRACE;
	for(struct sub *s = c->subs; s; s = s->next){
		s->caught = false;
	}
	for(struct sub *s = c->subs; s; s = s->next){
		if(!s->group) catch_up(c, ctx, s->filter, s->qos);
	}
}

/* moved_on: an offline session here whose client is online on another
 * broker now (it moved when this broker stopped, or when its connection
 * here was lost). A message queued here for it would be a copy of one it
 * gets there: when the client came back here, it would receive everything
 * published since it left, again, up to max_queued_messages (and the
 * session would hold that much meanwhile). It is not queued. Once the
 * client leaves that broker, or that broker is not heard from for
 * VIEW_TTL, this session queues again; what it missed in between, the
 * catch-up replays when the client returns here (dir_elsewhere). */
static bool moved_on(const char *id, const struct mosquitto *ctx)
{
	int home;
	if(!catchup_on() || is_bridge(ctx)) return false;
	home = dir_online_elsewhere(id, self);
	return home >= 0 && peers[home].seen > 0 && now() - peers[home].seen <= VIEW_TTL;
}

/* learning: whether this broker, just started, may not know yet which of
 * its offline sessions have their client online on another broker. Each
 * broker says which sessions it holds when it hears this one (after a
 * start, within a gossip round of the bridge coming up); until then, a
 * session restored here from before the stop would queue copies of what
 * its client gets elsewhere — the bridge's catch-up replays everything
 * this broker missed while down — and its client, back here minutes
 * later, would get them all again (up to 171 s old in a seed-14 soak).
 * While learning, such a session queues nothing and the messages are
 * owed to it (dir_owe): dropped when another broker says its client is
 * there (dir_read), queued once learning ends (learnt_owed, at the tick
 * that ends it: nothing is let through before), or caught up when the
 * client connects here first. */
static bool learning(double t)
{
	/* What was held back is queued while it is still kept. */
	if(held_at > 0 && t - held_at >= keep_window / 2) return false;
	return !((heard_at > 0 && t - heard_at >= LEARN_SECONDS) || t - started >= join_grace + LEARN_SECONDS);
}

/* learnt_owed queues, once learning ended, what was held back from each
 * offline session whose client no other broker holds. */
static void learnt_owed(double t)
{
	struct client *c, *tmp;
	int n = 0;
	HASH_ITER(hh, clients, c, tmp){
		double from;
		if(c->ctx || c->pending || c->clean || (from = dir_take_owed(c->id)) <= 0) continue;
		if(moved_on(c->id, NULL)) continue; /* its client is on a broker heard from */
		catch_up_subs(c, NULL, from, t);
		n++;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_shared: learnt where the clients of the sessions restored here are (%.1f s after start): %d offline sessions get what was held back for them",
			t - started, n);
}

static bool live(const char *id, const struct mosquitto *ctx)
{
	struct client *c = client_get(id, false);
	return c && c->ctx == ctx;
}

static int on_acl(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *id = mosquitto_client_id(ed->client);
	struct client *c;
	char *group = NULL;
	const char *filter;
	(void)event;
	(void)userdata;

	if(!strncmp(ed->topic, "$cluster/", 9) || (!strncmp(ed->topic, "$share/", 7) && strstr(ed->topic, "/$cluster/"))){
		return is_bridge(ed->client) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
	if(!id) return MOSQ_ERR_SUCCESS;
	c = client_get(id, false);
	if(c && c->pending == ed->client) commit(c);
	/* The cluster's rules first: a refused subscription is not tracked, a
	 * refused delivery is not one of the group's. */
	if(auth_acl(ed->client, ed->access, ed->topic) != MOSQ_ERR_SUCCESS) return MOSQ_ERR_ACL_DENIED;
	switch(ed->access){
		case MOSQ_ACL_SUBSCRIBE:
		case MOSQ_ACL_UNSUBSCRIBE:
			c = client_get(id, ed->access == MOSQ_ACL_SUBSCRIBE);
			if(!c) return MOSQ_ERR_SUCCESS;
			if(split_share(ed->topic, &group, &filter)){
				sub_set(c, group, filter, ed->access == MOSQ_ACL_SUBSCRIBE);
				mosquitto_free(group);
				counts_dirty = true;
			}else{
				sub_set(c, NULL, ed->topic, ed->access == MOSQ_ACL_SUBSCRIBE);
				if(ed->access == MOSQ_ACL_SUBSCRIBE){
					for(struct sub *s = c->subs; s; s = s->next){
						if(!s->group && !strcmp(s->filter, ed->topic)) s->qos = ed->qos;
					}
					catch_up(c, ed->client, ed->topic, ed->qos);
				}
			}
			state_dirty = true;
			return MOSQ_ERR_SUCCESS;
		case MOSQ_ACL_READ: {
			bool normal = false, shared = false, here = false;
			c = client_get(id, false);
			if((!c || (!c->ctx && !c->pending)) && moved_on(id, ed->client)) return MOSQ_ERR_ACL_DENIED;
			if(!c || c->reconnecting) return MOSQ_ERR_SUCCESS;
			for(struct sub *s = c->subs; s; s = s->next){
				if(!matches(s->filter, ed->topic)) continue;
				if(!s->group){
					normal = true;
					break;
				}
				shared = true;
				if(!here && s->key && deliverer(s->key, ed->topic, ed->payload, ed->payloadlen) == self){
					here = true;
				}
			}
			/* An offline session while this broker learns where its
			 * client is: held back, owed from when it was kept
			 * (learning). Only a message kept can be owed (not a will,
			 * nor a $ topic). */
			if(normal && !learnt && !c->ctx && !c->pending && !c->clean){
				double kept = catchup_last(ed->topic, ed->payload, ed->payloadlen);
				if(kept > 0){
					if(held_at <= 0) held_at = kept;
					dir_owe(id, kept);
					return MOSQ_ERR_ACL_DENIED;
				}
			}
			if(normal || !shared || here) return MOSQ_ERR_SUCCESS;
			return MOSQ_ERR_ACL_DENIED;
		}
		default:
			return MOSQ_ERR_SUCCESS;
	}
}

/* on_connect: BASIC_AUTH is the one event at every CONNECT; the users of
 * the operator's state are checked here (cluster_auth), the others are
 * left to the password file. */
/* joined: whether this broker admits clients. The hub (broker 0, no
 * bridge) always does. A spoke that starts (a restart, a move, a rolling
 * update) does once another broker's gossip has reached it over its
 * bridge: before, a client admitted here would publish into an island
 * (its messages reaching no other broker's subscribers) and read the
 * retained messages this broker kept from before it stopped, older than
 * the cluster's. Alone for join_grace seconds (every parent gone), it
 * admits clients anyway. Once joined it never refuses again: a running
 * broker that loses its parent goes on serving. */
static bool joined(void)
{
	double t;
	if(has_joined || self == 0 || join_grace <= 0) return true;
	t = now();
	for(int i = 0; i < MAX_BROKERS; i++){
		if(i != self && peers[i].seen > 0 && t - peers[i].seen < VIEW_TTL){
			has_joined = true;
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_shared: joined the cluster (broker %d heard %.1f s after start): admitting clients", i, t - started);
			return true;
		}
	}
	if(t - started >= join_grace){
		has_joined = true;
		mosquitto_log_printf(MOSQ_LOG_WARNING, "cluster_shared: no other broker heard in %.0f s: admitting clients alone", join_grace);
		return true;
	}
	return false;
}

static int on_connect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *id = mosquitto_client_id(ed->client);
	struct client *c;
	(void)event;
	(void)userdata;
	if(!(ed->username && !strcmp(ed->username, bridge_user)) && !joined()){
		if(!join_gate_logged){
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_shared: refusing clients until this broker has joined the cluster (at most %.0f s)", join_grace);
			join_gate_logged = true;
		}
		return MOSQ_ERR_AUTH;
	}
	if(!id) return auth_basic(ed->client, ed->username, ed->password);
	c = client_get(id, true);
	if(!c) return auth_basic(ed->client, ed->username, ed->password);
	c->pending = ed->client;
	c->pending_clean = mosquitto_client_clean_session(ed->client);
	c->reconnecting = true;
	connects = true;
	return auth_basic(ed->client, ed->username, ed->password);
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	const char *id = mosquitto_client_id(ed->client);
	struct client *c;
	(void)event;
	(void)userdata;
	auth_disconnect(ed->client);
	if(!id) return MOSQ_ERR_SUCCESS;
	c = client_get(id, false);
	if(!c) return MOSQ_ERR_SUCCESS;
	if(c->pending == ed->client){
		c->pending = NULL; /* refused, or gone before it began */
		return MOSQ_ERR_SUCCESS;
	}
	if(c->ctx != ed->client) return MOSQ_ERR_SUCCESS;
	if(!c->clean || is_bridge(ed->client)){
		catchup_drop(id);
		dir_left(id, self, now());
	}
	if(c->clean && !c->pending){
		client_del(c);
	}else{
		c->ctx = NULL; /* offline; a pending takeover decides the rest */
	}
	counts_dirty = true;
	state_dirty = true;
	return MOSQ_ERR_SUCCESS;
}

/* Gossip payload: one line per group, "online total glen flen\n" then the
 * group and filter bytes. */
static void gossip(void)
{
	struct count *n, *tmp;
	char topic[64], *buf = NULL, *p;
	size_t size = 0;
	HASH_ITER(hh, mine, n, tmp){
		size += 96 + strlen(n->key); /* the header line is at most 66 bytes */
	}
	buf = mosquitto_malloc(size + 1);
	if(!buf) return;
	p = buf;
	HASH_ITER(hh, mine, n, tmp){
		char *sep = strchr(n->key, '\x1f');
		size_t g = (size_t)(sep - n->key), f = strlen(sep + 1);
		p += sprintf(p, "%d %d %zu %zu\n", n->online, n->total, g, f);
		memcpy(p, n->key, g);
		p += g;
		memcpy(p, sep + 1, f);
		p += f;
	}
	snprintf(topic, sizeof(topic), GOSSIP_PREFIX "%d", self);
	mosquitto_broker_publish_copy(NULL, topic, (int)(p - buf), buf, 0, false, NULL);
	mosquitto_free(buf);
}

static void read_gossip(int from, const char *buf, uint32_t len)
{
	const char *p = buf, *end = buf + len;
	struct count *h = NULL, *n;
	while(p < end){
		int online, total, used = 0;
		size_t g, f;
		char line[96];
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if(!nl || nl - p >= (long)sizeof(line)) break;
		memcpy(line, p, (size_t)(nl - p));
		line[nl - p] = '\0';
		if(sscanf(line, "%d %d %zu %zu%n", &online, &total, &g, &f, &used) != 4) break;
		p = nl + 1;
		if(g > (size_t)(end - p) || f > (size_t)(end - p) - g) break;
		n = mosquitto_calloc(1, sizeof(*n));
		if(!n) break;
		n->key = mosquitto_malloc(g + f + 2);
		if(!n->key){
			mosquitto_free(n);
			break;
		}
		memcpy(n->key, p, g);
		n->key[g] = '\x1f';
		memcpy(n->key + g + 1, p + g, f);
		n->key[g + f + 1] = '\0';
		n->online = online;
		n->total = total;
		p += g + f;
		HASH_ADD_KEYPTR(hh, h, n->key, strlen(n->key), n);
	}
	counts_free(&peers[from].counts);
	peers[from].counts = h;
	double t = now();
	/* A broker heard for the first time, or again after a silence: it
	 * learns from everyone which sessions they hold. */
	if(peers[from].seen <= 0 || t - peers[from].seen > VIEW_TTL) dir_due = true;
	peers[from].seen = t;
	if(heard_at <= 0) heard_at = t;
}

static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	(void)event;
	(void)userdata;
	if(!strcmp(ed->topic, AUTH_STATE_TOPIC)) return auth_apply(mosquitto_client_id(ed->client), ed->payload, ed->payloadlen);
	if(!strncmp(ed->topic, DIR_PREFIX, strlen(DIR_PREFIX))){
		int from = atoi(ed->topic + strlen(DIR_PREFIX));
		if(from >= 0 && from < MAX_BROKERS && from != self) dir_read(from, ed->payload, ed->payloadlen, now());
		return MOSQ_ERR_SUCCESS;
	}
	if(strncmp(ed->topic, GOSSIP_PREFIX, strlen(GOSSIP_PREFIX))){
		catchup_keep(ed->topic, ed->payload, ed->payloadlen, ed->qos, ed->properties, is_bridge(ed->client) ? mosquitto_client_id(ed->client) : NULL, now());
		return MOSQ_ERR_SUCCESS;
	}
	/* Only the bridge user and this broker's own bridge get here: the
	 * WRITE check (on_acl), which runs first, refuses everyone else, and
	 * Mosquitto checks nothing for its bridges. */
	int from = atoi(ed->topic + strlen(GOSSIP_PREFIX));
	if(from >= 0 && from < MAX_BROKERS && from != self){
		read_gossip(from, ed->payload, ed->payloadlen);
	}
	return MOSQ_ERR_SUCCESS;
}

/* The state file: per client "C clean idlen\n" + id, then per
 * subscription "S glen flen\n" + group + filter (glen -1: normal). */
static void save_state(void)
{
	struct client *c, *tmp;
	char path[4096];
	FILE *f;
	if(!state_file) return;
	snprintf(path, sizeof(path), "%s.new", state_file);
	f = fopen(path, "w");
	if(!f) return;
	HASH_ITER(hh, clients, c, tmp){
		if(c->clean) continue; /* its session ends with its connection */
		fprintf(f, "C %zu\n%s", strlen(c->id), c->id);
		for(struct sub *s = c->subs; s; s = s->next){
			fprintf(f, "S %ld %zu\n%s%s", s->group ? (long)strlen(s->group) : -1L, strlen(s->filter), s->group ? s->group : "", s->filter);
		}
	}
	if(fclose(f) == 0) rename(path, state_file);
}

static char *read_n(FILE *f, size_t n)
{
	char *s = mosquitto_malloc(n + 1);
	if(!s) return NULL;
	if(fread(s, 1, n, f) != n){
		mosquitto_free(s);
		return NULL;
	}
	s[n] = '\0';
	return s;
}

static void load_state(void)
{
	FILE *f;
	char line[64];
	struct client *c = NULL;
	if(!state_file || !(f = fopen(state_file, "r"))) return;
	while(fgets(line, sizeof(line), f)){
		size_t n, fl;
		long gl;
		if(sscanf(line, "C %zu", &n) == 1){
			char *id = read_n(f, n);
			if(!id) break;
			c = client_get(id, true);
			mosquitto_free(id);
		}else if(c && sscanf(line, "S %ld %zu", &gl, &fl) == 2){
			char *g = gl >= 0 ? read_n(f, (size_t)gl) : NULL;
			char *fi = read_n(f, fl);
			if(fi) sub_set(c, g, fi, true);
			mosquitto_free(g);
			mosquitto_free(fi);
		}else{
			break;
		}
	}
	fclose(f);
	recount();
}

static int on_tick(int event, void *event_data, void *userdata)
{
	struct client *c, *tmp;
	double t = now();
	(void)event;
	(void)event_data;
	(void)userdata;
	if(connects){
		HASH_ITER(hh, clients, c, tmp){
			commit(c);
			c->reconnecting = false;
		}
		connects = false;
	}
	/* Counts are rebuilt at most ten times a second (a burst of
	 * connects or subscriptions costs one pass over the subscriptions). */
	if(counts_dirty && t - last_recount >= 0.1){
		recount();
		counts_dirty = false;
		last_recount = t;
	}
	if(gossip_dirty || t - last_gossip >= GOSSIP_EVERY){
		gossip();
		gossip_dirty = false;
		last_gossip = t;
	}
	auth_tick(t);
	dir_tick(t);
	if(state_dirty && t - last_state >= 1.0){
		save_state();
		state_dirty = false;
		last_state = t;
	}
	return MOSQ_ERR_SUCCESS;
}

/* settle starts the catch-ups that waited to learn when their session
 * elsewhere stopped receiving (dir_settle): every subscription the
 * session has so far; later ones as they come (catch_up). */
static void settle(double t)
{
	struct client *c, *tmp;
	double seen[MAX_BROKERS];
	int left = 0;
	for(int i = 0; i < MAX_BROKERS; i++){
		seen[i] = peers[i].seen;
	}
	HASH_ITER(hh, clients, c, tmp){
		if(!c->settling) continue;
		if(!c->ctx){
			c->settling = false; /* gone again: its next arrival decides */
			continue;
		}
		/* Still online there when the wait ends: its connection there is
		 * half open and its broker has not timed it out yet, so when it
		 * stopped receiving is not known (the client took its keepalive,
		 * its ping's timeout and its reconnections to notice: 10.8 s with
		 * a 5 s keepalive in a seed-9 soak): the whole keep is replayed. */
		double from = dir_settle(c->id, t, seen, VIEW_TTL, SETTLE_WAIT, 1e9);
		if(from <= 0){
			left++;
			continue;
		}
		c->settling = false;
		catch_up_subs(c, c->ctx, from, t);
	}
	settling = left;
}

/* dir_tick runs the catch-ups and sends the directory's gossip. */
static void dir_tick(double t)
{
	struct client *c, *tmp;
	char topic[64], *buf;
	size_t len = 0;
	if(!catchup_on()) return;
	if(!learnt && !learning(t)){
		learnt = true;
		learnt_owed(t);
	}
	if(settling > 0) settle(t);
	catchup_run(t, live);
	if(dir_due || t - last_dir >= DIR_EVERY){
		HASH_ITER(hh, clients, c, tmp){
			if(c->ctx && (!c->clean || is_bridge(c->ctx))) dir_announce(c->id, self);
		}
		dir_due = false;
		last_dir = t;
	}
	if(t - last_sweep >= 10.0){
		double seen[MAX_BROKERS];
		for(int i = 0; i < MAX_BROKERS; i++){
			seen[i] = peers[i].seen;
		}
		dir_sweep(t, seen, VIEW_TTL);
		last_sweep = t;
	}
	buf = dir_take(&len);
	if(!buf) return;
	snprintf(topic, sizeof(topic), DIR_PREFIX "%d", self);
	mosquitto_broker_publish_copy(NULL, topic, (int)len, buf, 1, false, NULL);
	mosquitto_free(buf);
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *opts, int opt_count)
{
	bool auth_on = false;
	const char *auth_file = NULL;
	double auth_grace = 0, catchup_seconds = CATCHUP_SECONDS, catchup_margin = CATCHUP_MARGIN;
	size_t catchup_bytes = CATCHUP_BYTES;
	(void)userdata;
	plugin_id = identifier;
	for(int i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "broker")){
			self = atoi(opts[i].value);
		}else if(!strcmp(opts[i].key, "bridge_user")){
			bridge_user = mosquitto_strdup(opts[i].value);
		}else if(!strcmp(opts[i].key, "state_file")){
			state_file = mosquitto_strdup(opts[i].value);
		}else if(!strcmp(opts[i].key, "auth")){
			auth_on = !strcmp(opts[i].value, "true");
		}else if(!strcmp(opts[i].key, "auth_state_file")){
			auth_file = opts[i].value;
		}else if(!strcmp(opts[i].key, "auth_grace")){
			auth_grace = atof(opts[i].value);
		}else if(!strcmp(opts[i].key, "join_grace")){
			join_grace = atof(opts[i].value);
		}else if(!strcmp(opts[i].key, "catchup_seconds")){
			catchup_seconds = atof(opts[i].value);
		}else if(!strcmp(opts[i].key, "catchup_bytes")){
			catchup_bytes = (size_t)strtoull(opts[i].value, NULL, 10);
		}else if(!strcmp(opts[i].key, "catchup_margin")){
			catchup_margin = atof(opts[i].value);
		}
	}
	if(self < 0 || self >= MAX_BROKERS || !bridge_user){
		mosquitto_log_printf(MOSQ_LOG_ERR, "cluster_shared: plugin_opt_broker (0-%d) and plugin_opt_bridge_user are required", MAX_BROKERS - 1);
		return MOSQ_ERR_INVAL;
	}
	started = now();
	learnt = catchup_seconds <= 0;
	keep_window = catchup_seconds;
	catchup_init(catchup_seconds, catchup_bytes, catchup_margin, started);
	load_state();
	auth_init(auth_on, auth_file, auth_grace, bridge_user);
	if(mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl, NULL, NULL)
			|| mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_connect, NULL, NULL)
			|| mosquitto_callback_register(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL)
			|| mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL)
			|| mosquitto_callback_register(plugin_id, MOSQ_EVT_TICK, on_tick, NULL, NULL)){
		return MOSQ_ERR_UNKNOWN;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_shared: broker %d, shared subscriptions delivered once across the cluster", self);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	struct client *c, *tmp;
	(void)userdata;
	(void)opts;
	(void)opt_count;
	save_state();
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_connect, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_TICK, on_tick, NULL);
	HASH_ITER(hh, clients, c, tmp){
		client_del(c);
	}
	counts_free(&mine);
	for(int i = 0; i < MAX_BROKERS; i++){
		counts_free(&peers[i].counts);
	}
	auth_cleanup();
	catchup_cleanup();
	mosquitto_free(bridge_user);
	mosquitto_free(state_file);
	return MOSQ_ERR_SUCCESS;
}
