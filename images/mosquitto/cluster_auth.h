/*
 * cluster_auth: the users and ACL rules of a swarm-mqtt-operator cluster,
 * pushed by the operator to every broker at runtime (see cluster_auth.c).
 * Called from cluster_shared.c's callbacks: one plugin, so that the order
 * of the decisions is this file's, not the plugin chain's.
 */
#ifndef CLUSTER_AUTH_H
#define CLUSTER_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

/* The topic the operator publishes a broker's auth state on (QoS 1; the
 * PUBACK says it is applied). Never bridged: # does not match $ topics. */
#define AUTH_STATE_TOPIC "$cluster/auth/state"
/* The broker's answer, sent to the pushing client alone: the version it
 * serves and the one it served before ("-": none), "refused" (a state
 * that does not parse) or "disabled". */
#define AUTH_APPLIED_TOPIC "$cluster/auth/applied"

/* auth_init: on: enforce; state_file: where the last state is kept (NULL:
 * nowhere); grace: seconds a broker with a kept state waits for the
 * operator before serving it; internal: the internal user. */
void auth_init(bool on, const char *state_file, double grace, const char *internal);
void auth_cleanup(void);
/* auth_basic: MOSQ_ERR_SUCCESS / MOSQ_ERR_AUTH for the users of the state,
 * MOSQ_ERR_PLUGIN_DEFER for the others (the password file decides). */
int auth_basic(const struct mosquitto *client, const char *username, const char *password);
/* auth_acl: MOSQ_ERR_SUCCESS or MOSQ_ERR_ACL_DENIED. */
int auth_acl(const struct mosquitto *client, int access, const char *topic);
/* auth_apply: a state published on AUTH_STATE_TOPIC (by the internal user:
 * the ACL check let only it write there). */
int auth_apply(const char *from, const void *payload, uint32_t len);
void auth_tick(double now);
/* auth_disconnect: a connection ended (its user's count goes down). */
void auth_disconnect(const struct mosquitto *client);

#endif
