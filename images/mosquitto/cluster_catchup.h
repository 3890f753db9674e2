/*
 * cluster_catchup: what a client missed while it moved between brokers
 * (see cluster_catchup.c). Called from cluster_shared.c's callbacks.
 */
#ifndef CLUSTER_CATCHUP_H
#define CLUSTER_CATCHUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

/* The directory's gossip: which broker holds which persistent session.
 * Carried by the bridges (QoS 1), written and read only by the bridge
 * user, like the shared-subscription views. */
#define DIR_PREFIX "$cluster/dir/"

/* catchup_init: keep: seconds and bytes of messages kept (0 seconds:
 * catch-up off); margin: seconds replayed before the moment a session
 * stopped receiving; started: when this broker started. */
void catchup_init(double keep, size_t keep_bytes, double margin, double started);
void catchup_cleanup(void);
bool catchup_on(void);

/* catchup_keep: a message this broker took in, from a client or over a
 * bridge (bridge: the id of the bridge it came in on, else NULL; never
 * sent back to that bridge). */
void catchup_keep(const char *topic, const void *payload, uint32_t len, int qos, const mosquitto_property *props, const char *bridge, double now);

/* catchup_last: when the newest message kept arrived, if it is this one
 * (the one being delivered); else 0. */
double catchup_last(const char *topic, const void *payload, uint32_t len);

/* catchup_start: send client id, whose connection is ctx (NULL: its
 * offline session, queued), the kept
 * messages that arrived at or after from and match filter but none of
 * skip (its other filters, caught up on their own), at most qos. */
void catchup_start(const char *id, const struct mosquitto *ctx, const char *filter, int qos, double from, double now,
		const char *const *skip, int nskip);
/* catchup_drop: stop id's catch-ups (its connection ended or was taken
 * over); where each stopped is owed to its next arrival here. */
void catchup_drop(const char *id);
/* catchup_run: go on with the catch-ups (a bounded amount of work), drop
 * what is older than the keep. live(id, ctx): whether that connection is
 * still the client's. */
void catchup_run(double now, bool (*live)(const char *id, const struct mosquitto *ctx));

/* The directory. dir_arrived: a persistent client connected here with no
 * session (self: this broker); returns the moment from which it may have
 * missed messages (its session elsewhere stopped receiving, less the
 * margin), or 0 when it had no session elsewhere that the directory
 * knows. seen[i]: when broker i was last heard (0: never), ttl: after how
 * long silence it counts as gone. via: for another broker's bridge, that
 * broker's index (-1 for a client): what this broker took in while that
 * broker was not heard here never reached it, whatever the directory
 * says of its bridge's old connection. span: for a client, how long
 * before its broker there saw its connection end it may have stopped
 * receiving (1.5 keepalives: a half-open connection ends when its
 * keepalive runs out). */
double dir_arrived(const char *id, int self, double now, const double *seen, double ttl, int via, double span);
/* DIR_SETTLING: dir_arrived's answer for a client whose session the
 * directory says is still online on another broker heard from: when it
 * stopped receiving there is not known yet (dir_settle). */
#define DIR_SETTLING (-1.0)
/* dir_settle, for a client dir_arrived answered DIR_SETTLING: 0 while
 * unknown, else the moment from which it may have missed messages — when
 * its broker there said it left, or was last heard, less the margin; or,
 * when neither within wait seconds of its arrival (its connection there
 * half open), span seconds before it arrived (how long a client may take
 * to notice a dead connection), less the margin. */
double dir_settle(const char *id, double now, const double *seen, double ttl, double wait, double span);
/* dir_elsewhere: whether id's newest session, as the directory knows it,
 * is on another broker. */
bool dir_elsewhere(const char *id, int self);
/* dir_online_elsewhere: the broker id's newest session is online on, when
 * that is another one; else -1. */
int dir_online_elsewhere(const char *id, int self);
/* dir_owed: whether a catch-up here was left unfinished for id (its
 * connection ended before it was done, or while it waited for
 * dir_settle): its arrival here goes on with it (dir_arrived). */
bool dir_owed(const char *id, int self);
/* dir_owe: a message from t on was held back from id's offline session
 * here (this broker did not know yet whether its client is online on
 * another broker): owed to it, unless another broker announces it (its
 * client is there). dir_take_owed: the moment owed from (0: none), now
 * no longer owed. */
void dir_owe(const char *id, double t);
double dir_take_owed(const char *id);
/* dir_here: a persistent client connected here with its session. */
void dir_here(const char *id, int self);
/* dir_left: a persistent client's connection here ended. */
void dir_left(const char *id, int self, double now);
/* dir_announce: gossip again that id is online here (a peer that joins
 * learns the sessions it missed). */
void dir_announce(const char *id, int self);
/* dir_read: another broker's directory gossip. */
void dir_read(int from, const char *buf, uint32_t len, double now);
/* dir_take: the gossip to send (the caller frees it), NULL when none. */
char *dir_take(size_t *len);
/* dir_sweep: forget sessions offline, or on a broker gone, for longer
 * than the keep. */
void dir_sweep(double now, const double *seen, double ttl);

#endif
