/*
 * cluster_auth: users and ACL rules pushed by the operator at runtime.
 *
 * The operator publishes the cluster's whole auth state to each broker on
 * $cluster/auth/state (QoS 1, over the internal listener, as the internal
 * user); this file parses it, swaps it in whole, keeps it in a file, and
 * kicks the connections of users removed or whose password changed. No
 * restart, no other client touched: a tightened rule applies at the next
 * publish, subscription or delivery.
 *
 * State (text, one item per line):
 *   cluster-auth 1
 *   version <id>
 *   rule <read|write|readwrite|deny> <topic filter>    every client
 *   user <name> <$7$ hash> [max connections]           a user of the state
 *   urule <access> <topic filter>                      the last user's own
 *   end
 *
 * Rules: %u is the client's user name, %c its client id (a name holding
 * /, + or # is refused by every rule that uses it). A deny rule that
 * matches wins over any allow. Deny by default where a rule speaks to the
 * client: when the cluster has rules (every client), or for a user with
 * rules of its own; a client with neither may do everything. The internal
 * user is never checked.
 *
 * Until a broker has a state it refuses every client but the internal
 * user: a broker that (re)starts serves no one with stale or missing
 * rules. A broker with a kept state (its data volume) that hears nothing
 * from the operator for `grace` seconds serves the kept state (an
 * operator outage must not take the brokers down with it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <mosquitto.h>
#include <uthash.h>

#include "cluster_auth.h"

#define ACC_READ 1
#define ACC_WRITE 2

struct rule {
	int access; /* 0: deny */
	char *topic;
	bool subst; /* holds %u or %c */
	struct rule *next;
};

struct auser {
	char *name;
	char *hash; /* $7$iterations$salt$hash, base64 */
	int max_conns; /* 0: no limit */
	struct rule *rules;
	UT_hash_handle hh;
};

/* The live connections of the state's users: by connection, and counted
 * by user name (kept across states: a new state does not reset them). */
struct live {
	const struct mosquitto *ctx;
	char *user;
	UT_hash_handle hh;
};
struct ucount {
	char *user;
	int n;
	UT_hash_handle hh;
};
static struct live *lives;
static struct ucount *ucounts;

struct state {
	char *version;
	struct rule *rules;
	struct auser *users;
	int nrules; /* all rules, the users' included */
	int ncluster; /* the rules for every client */
};

static bool count_in(const struct mosquitto *client, const struct auser *u);
static bool enabled, loaded;
static void *cur_raw; /* the state as pushed, to tell a different one */
static uint32_t cur_len;
static struct state cur, kept;
static bool have_kept;
static char *state_path, *internal_user;
static double grace_s = 10, started = -1;
static bool gate_logged;

static void rules_free(struct rule *r)
{
	while(r){
		struct rule *n = r->next;
		mosquitto_free(r->topic);
		mosquitto_free(r);
		r = n;
	}
}

static void state_free(struct state *s)
{
	struct auser *u, *tmp;
	rules_free(s->rules);
	HASH_ITER(hh, s->users, u, tmp){
		HASH_DEL(s->users, u);
		rules_free(u->rules);
		mosquitto_free(u->name);
		mosquitto_free(u->hash);
		mosquitto_free(u);
	}
	mosquitto_free(s->version);
	memset(s, 0, sizeof(*s));
}

static int parse_access(const char *a)
{
	if(!strcmp(a, "read")) return ACC_READ;
	if(!strcmp(a, "write")) return ACC_WRITE;
	if(!strcmp(a, "readwrite")) return ACC_READ | ACC_WRITE;
	if(!strcmp(a, "deny")) return 0;
	return -1;
}

/* add_rule parses "<access> <topic>" onto *list (order kept). */
static bool add_rule(struct rule **list, char *rest)
{
	char *sp = strchr(rest, ' ');
	struct rule *r, **tail;
	int acc;
	if(!sp) return false;
	*sp = '\0';
	acc = parse_access(rest);
	if(acc < 0 || mosquitto_sub_topic_check(sp + 1) != MOSQ_ERR_SUCCESS) return false;
	r = mosquitto_calloc(1, sizeof(*r));
	if(!r) return false;
	r->access = acc;
	r->topic = mosquitto_strdup(sp + 1);
	r->subst = strstr(sp + 1, "%u") || strstr(sp + 1, "%c");
	for(tail = list; *tail; tail = &(*tail)->next);
	*tail = r;
	return r->topic != NULL;
}

/* parse reads a state; false (and *s freed) when it is not one whole. */
static bool parse(const char *buf, uint32_t len, struct state *s)
{
	char *text = mosquitto_malloc(len + 1), *line, *save = NULL;
	struct auser *u = NULL;
	bool ok = false, header = false;
	int n = 0;
	memset(s, 0, sizeof(*s));
	if(!text) return false;
	memcpy(text, buf, len);
	text[len] = '\0';
	for(line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)){
		n++;
		if(!header){
			if(strcmp(line, "cluster-auth 1")) break;
			header = true;
		}else if(!strncmp(line, "version ", 8)){
			mosquitto_free(s->version);
			s->version = mosquitto_strdup(line + 8);
		}else if(!strncmp(line, "rule ", 5)){
			if(!add_rule(&s->rules, line + 5)) break;
			s->nrules++;
			s->ncluster++;
		}else if(!strncmp(line, "user ", 5)){
			char *sp = strchr(line + 5, ' '), *lim;
			int max = 0;
			if(!sp || strncmp(sp + 1, "$7$", 3)) break;
			*sp = '\0';
			if((lim = strchr(sp + 1, ' '))){
				*lim = '\0';
				max = atoi(lim + 1);
				if(max < 1) break;
			}
			HASH_FIND_STR(s->users, line + 5, u);
			if(u) break; /* twice */
			u = mosquitto_calloc(1, sizeof(*u));
			if(!u) break;
			u->name = mosquitto_strdup(line + 5);
			u->hash = mosquitto_strdup(sp + 1);
			u->max_conns = max;
			if(!u->name || !u->hash) break;
			HASH_ADD_KEYPTR(hh, s->users, u->name, strlen(u->name), u);
		}else if(!strncmp(line, "urule ", 6)){
			if(!u || !add_rule(&u->rules, line + 6)) break;
			s->nrules++;
		}else if(!strcmp(line, "end")){
			ok = s->version != NULL;
			break;
		}else{
			break;
		}
	}
	if(!ok){
		mosquitto_log_printf(MOSQ_LOG_ERR, "cluster_auth: refused a state that does not parse (line %d)", n);
		state_free(s);
	}
	mosquitto_free(text);
	return ok;
}

static void save(const void *payload, uint32_t len)
{
	char path[4096];
	FILE *f;
	if(!state_path) return;
	snprintf(path, sizeof(path), "%s.new", state_path);
	f = fopen(path, "w");
	if(!f) return;
	if(fwrite(payload, 1, len, f) != len){
		fclose(f);
		return;
	}
	if(fclose(f) == 0) rename(path, state_path);
}

/* swap makes s the state, and kicks whoever it no longer admits: the
 * users removed and the users whose password changed. */
static void swap(struct state *s, const char *how)
{
	struct auser *u, *tmp, *n;
	HASH_ITER(hh, cur.users, u, tmp){
		HASH_FIND_STR(s->users, u->name, n);
		if(!n || strcmp(n->hash, u->hash)){
			mosquitto_kick_client_by_username(u->name, false);
		}
	}
	state_free(&cur);
	cur = *s;
	memset(s, 0, sizeof(*s));
	loaded = true;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_auth: applied state %s (%s): %u users, %d rules",
			cur.version, how, HASH_COUNT(cur.users), cur.nrules);
}

/* reply tells the pusher (its client id) which state this broker serves:
 * sent to it alone, with no subscription. */
static void reply(const char *to, const char *what)
{
	if(to) mosquitto_broker_publish_copy(to, AUTH_APPLIED_TOPIC, (int)strlen(what), what, 1, false, NULL);
}

int auth_apply(const char *from, const void *payload, uint32_t len)
{
	struct state s;
	char before[256], answer[600];
	if(!enabled){
		reply(from, "disabled");
		return MOSQ_ERR_SUCCESS;
	}
	if(!parse(payload, len, &s)){
		reply(from, "refused");
		return MOSQ_ERR_SUCCESS;
	}
	/* The answer names the version served before this state too: the
	 * operator tells a state changed behind its back (drift) from its
	 * own. */
	snprintf(before, sizeof(before), "%s", loaded && cur.version ? cur.version : "-");
	if(!loaded || cur_len != len || memcmp(cur_raw, payload, len)){
		if(loaded && cur.version && !strcmp(cur.version, s.version)){
			snprintf(before, sizeof(before), "altered"); /* same name, other content */
		}
		swap(&s, "from the operator");
		save(payload, len);
		mosquitto_free(cur_raw);
		cur_raw = mosquitto_malloc(len ? len : 1);
		cur_len = cur_raw ? len : 0;
		if(cur_raw) memcpy(cur_raw, payload, len);
	}
	state_free(&s);
	snprintf(answer, sizeof(answer), "%s %s", cur.version, before);
	reply(from, answer);
	return MOSQ_ERR_SUCCESS;
}

void auth_tick(double now)
{
	if(!enabled || loaded) return;
	if(started < 0) started = now;
	if(have_kept && now - started >= grace_s){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "cluster_auth: no state from the operator in %.0f s: serving the kept one", grace_s);
		swap(&kept, "kept on disk");
		have_kept = false;
	}
}

static void load_kept(void)
{
	FILE *f;
	char *buf;
	long n;
	if(!state_path || !(f = fopen(state_path, "r"))) return;
	if(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < 64L * 1024 * 1024 && fseek(f, 0, SEEK_SET) == 0){
		buf = mosquitto_malloc((size_t)n);
		if(buf && fread(buf, 1, (size_t)n, f) == (size_t)n){
			have_kept = parse(buf, (uint32_t)n, &kept);
		}
		mosquitto_free(buf);
	}
	fclose(f);
}

void auth_init(bool on, const char *file, double grace, const char *internal)
{
	enabled = on;
	if(!on) return;
	state_path = file ? mosquitto_strdup(file) : NULL;
	internal_user = mosquitto_strdup(internal);
	if(grace > 0) grace_s = grace;
	load_kept();
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_auth: waiting for the operator's users and rules%s",
			have_kept ? " (a kept state is served if none comes)" : "");
}

void auth_cleanup(void)
{
	struct live *l, *lt;
	struct ucount *c, *ct;
	HASH_ITER(hh, lives, l, lt){
		HASH_DEL(lives, l);
		mosquitto_free(l->user);
		mosquitto_free(l);
	}
	HASH_ITER(hh, ucounts, c, ct){
		HASH_DEL(ucounts, c);
		mosquitto_free(c->user);
		mosquitto_free(c);
	}
	state_free(&cur);
	state_free(&kept);
	mosquitto_free(cur_raw);
	mosquitto_free(state_path);
	mosquitto_free(internal_user);
}

static bool is_internal(const char *username)
{
	return username && internal_user && !strcmp(username, internal_user);
}

/* verify checks a password against a $7$ (PBKDF2-SHA512) hash, in
 * constant time. */
static bool verify(const char *hash, const char *password)
{
	char *h = mosquitto_strdup(hash), *save = NULL, *it, *salt64, *sum64;
	unsigned char salt[128], sum[128], out[64];
	int slen, hlen, iter;
	bool ok = false;
	if(!h || !password) goto done;
	strtok_r(h, "$", &save); /* "7" */
	it = strtok_r(NULL, "$", &save);
	salt64 = strtok_r(NULL, "$", &save);
	sum64 = strtok_r(NULL, "$", &save);
	if(!it || !salt64 || !sum64 || strlen(salt64) > 160 || strlen(sum64) > 160) goto done;
	iter = atoi(it);
	slen = EVP_DecodeBlock(salt, (const unsigned char *)salt64, (int)strlen(salt64));
	hlen = EVP_DecodeBlock(sum, (const unsigned char *)sum64, (int)strlen(sum64));
	if(iter < 1 || slen < 0 || hlen < 64) goto done;
	/* EVP_DecodeBlock counts the padding's zero bytes. */
	for(const char *p = salt64 + strlen(salt64); p > salt64 && p[-1] == '='; p--) slen--;
	if(!PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, slen, iter, EVP_sha512(), 64, out)) goto done;
	ok = CRYPTO_memcmp(out, sum, 64) == 0;
done:
	mosquitto_free(h);
	return ok;
}

int auth_basic(const struct mosquitto *client, const char *username, const char *password)
{
	struct auser *u;
	(void)client;
	if(!enabled || is_internal(username)) return MOSQ_ERR_PLUGIN_DEFER;
	if(!loaded){
		if(!gate_logged){
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_auth: refusing clients until the operator's users and rules are here");
			gate_logged = true;
		}
		return MOSQ_ERR_AUTH;
	}
	if(!username) return MOSQ_ERR_PLUGIN_DEFER;
	HASH_FIND_STR(cur.users, username, u);
	if(!u) return MOSQ_ERR_PLUGIN_DEFER;
	if(!verify(u->hash, password)) return MOSQ_ERR_AUTH;
	return count_in(client, u) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
}

/* count_in counts a connection of u, false when u is at its limit. */
static bool count_in(const struct mosquitto *client, const struct auser *u)
{
	struct ucount *c;
	struct live *l;
	HASH_FIND_PTR(lives, &client, l);
	if(l) return true; /* already counted (a re-authentication) */
	HASH_FIND_STR(ucounts, u->name, c);
	if(u->max_conns > 0 && c && c->n >= u->max_conns){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "cluster_auth: refused a connection of %s: at its limit of %d", u->name, u->max_conns);
		return false;
	}
	if(!c){
		c = mosquitto_calloc(1, sizeof(*c));
		if(!c || !(c->user = mosquitto_strdup(u->name))){
			mosquitto_free(c);
			return true;
		}
		HASH_ADD_KEYPTR(hh, ucounts, c->user, strlen(c->user), c);
	}
	l = mosquitto_calloc(1, sizeof(*l));
	if(!l || !(l->user = mosquitto_strdup(u->name))){
		mosquitto_free(l);
		return true;
	}
	l->ctx = client;
	HASH_ADD_PTR(lives, ctx, l);
	c->n++;
	return true;
}

void auth_disconnect(const struct mosquitto *client)
{
	struct live *l;
	struct ucount *c;
	HASH_FIND_PTR(lives, &client, l);
	if(!l) return;
	HASH_FIND_STR(ucounts, l->user, c);
	if(c && --c->n <= 0){
		HASH_DEL(ucounts, c);
		mosquitto_free(c->user);
		mosquitto_free(c);
	}
	HASH_DEL(lives, l);
	mosquitto_free(l->user);
	mosquitto_free(l);
}

/* expand writes r's topic with %u and %c replaced; NULL when the rule
 * cannot apply (no user name, or a name holding / + #). */
static char *expand(const struct rule *r, const char *user, const char *id)
{
	size_t n = 0, ul = user ? strlen(user) : 0, cl = id ? strlen(id) : 0;
	char *out, *o;
	const char *t;
	if(!r->subst) return mosquitto_strdup(r->topic);
	if(strstr(r->topic, "%u") && (!user || strpbrk(user, "/+#"))) return NULL;
	if(strstr(r->topic, "%c") && (!id || strpbrk(id, "/+#"))) return NULL;
	for(t = r->topic; *t; t++){
		if(t[0] == '%' && (t[1] == 'u' || t[1] == 'c')){
			n += t[1] == 'u' ? ul : cl;
			t++;
		}else{
			n++;
		}
	}
	out = o = mosquitto_malloc(n + 1);
	if(!out) return NULL;
	for(t = r->topic; *t; t++){
		if(t[0] == '%' && (t[1] == 'u' || t[1] == 'c')){
			memcpy(o, t[1] == 'u' ? user : id, t[1] == 'u' ? ul : cl);
			o += t[1] == 'u' ? ul : cl;
			t++;
		}else{
			*o++ = *t;
		}
	}
	*o = '\0';
	return out;
}

/* covers: every topic filter f matches, rule filter r matches too. */
static bool covers(const char *r, const char *f)
{
	if(f[0] == '$' && (r[0] == '+' || r[0] == '#')) return false;
	for(;;){
		size_t rl = strcspn(r, "/"), fl = strcspn(f, "/");
		if(rl == 1 && r[0] == '#') return true;
		if(rl == 1 && r[0] == '+'){
			if(fl == 1 && f[0] == '#') return false;
		}else if(rl != fl || strncmp(r, f, rl) || (fl == 1 && (f[0] == '+' || f[0] == '#'))){
			return false;
		}
		r += rl;
		f += fl;
		if(!*r && !*f) return true;
		if(!*f) return !strcmp(r, "/#");
		if(!*r) return false;
		r++;
		f++;
	}
}

/* check walks one rule list. For a topic (publish, delivery): a matching
 * deny denies; a matching allow with the access allows. For a
 * subscription's filter: a deny covering the filter denies (a partly
 * denied filter is allowed and its denied topics are never delivered:
 * the READ check refuses them); an allow covering it allows. */
static void check(const struct rule *r, const char *user, const char *id, const char *topic, int need, bool filter, bool *allow, bool *deny)
{
	for(; r && !*deny; r = r->next){
		char *t = expand(r, user, id);
		bool m = false;
		if(!t){
			/* A name holding / + # could dodge a deny: it gets nothing. */
			if(r->access == 0 && ((strstr(r->topic, "%u") && user && strpbrk(user, "/+#")) || (strstr(r->topic, "%c") && id && strpbrk(id, "/+#")))){
				*deny = true;
			}
			continue;
		}
		if(r->access == 0){
			m = filter ? covers(t, topic) : (mosquitto_topic_matches_sub(t, topic, &m) == MOSQ_ERR_SUCCESS && m);
			if(m) *deny = true;
		}else if(r->access & need){
			m = filter ? covers(t, topic) : (mosquitto_topic_matches_sub(t, topic, &m) == MOSQ_ERR_SUCCESS && m);
			if(m) *allow = true;
		}
		mosquitto_free(t);
	}
}

int auth_acl(const struct mosquitto *client, int access, const char *topic)
{
	const char *user = mosquitto_client_username(client), *id = mosquitto_client_id(client);
	struct auser *u = NULL;
	bool allow = false, deny = false, filter = false;
	int need;
	if(!enabled || !loaded || is_internal(user)) return MOSQ_ERR_SUCCESS;
	if(user) HASH_FIND_STR(cur.users, user, u);
	/* Deny by default where a rule speaks to the client: the cluster has
	 * rules, or the client is a user with rules of its own. */
	if(cur.ncluster == 0 && !(u && u->rules)) return MOSQ_ERR_SUCCESS;
	switch(access){
		case MOSQ_ACL_READ: need = ACC_READ; break;
		case MOSQ_ACL_WRITE: need = ACC_WRITE; break;
		case MOSQ_ACL_SUBSCRIBE:
			need = ACC_READ;
			filter = true;
			if(!strncmp(topic, "$share/", 7)){
				const char *f = strchr(topic + 7, '/');
				if(!f) return MOSQ_ERR_ACL_DENIED;
				topic = f + 1;
			}
			break;
		default: return MOSQ_ERR_SUCCESS; /* unsubscribing is always allowed */
	}
	if(u) check(u->rules, user, id, topic, need, filter, &allow, &deny);
	check(cur.rules, user, id, topic, need, filter, &allow, &deny);
	return allow && !deny ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
}
