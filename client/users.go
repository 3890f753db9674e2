package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// ApplyUser sends one MqttUser document to be created or updated.
func (c *Client) ApplyUser(ctx context.Context, doc []byte) (*api.UserApplyResponse, error) {
	var out api.UserApplyResponse
	if err := c.do(ctx, http.MethodPost, api.UserBasePath, doc, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetUser reads one user.
func (c *Client) GetUser(ctx context.Context, name string) (*api.MqttUser, error) {
	var out api.MqttUser
	if err := c.do(ctx, http.MethodGet, api.UserBasePath+"/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListUsers reads every user matching a label selector ("" for all).
func (c *Client) ListUsers(ctx context.Context, selector string) (*api.MqttUserList, error) {
	p := api.UserBasePath
	if selector != "" {
		p += "?labelSelector=" + url.QueryEscape(selector)
	}
	var out api.MqttUserList
	if err := c.do(ctx, http.MethodGet, p, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteUser removes one user (its connections are closed on every
// broker).
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, api.UserBasePath+"/"+url.PathEscape(name), nil, nil)
}

// UserCredentials reads a user's generated password.
func (c *Client) UserCredentials(ctx context.Context, name string) (*api.Credentials, error) {
	var out api.Credentials
	if err := c.do(ctx, http.MethodGet, api.UserBasePath+"/"+url.PathEscape(name)+"/credentials", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotatePassword asks for a new password for a user.
func (c *Client) RotatePassword(ctx context.Context, name string) (*api.RenewResponse, error) {
	var out api.RenewResponse
	if err := c.do(ctx, http.MethodPost, api.UserBasePath+"/"+url.PathEscape(name)+"/password/rotate", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
