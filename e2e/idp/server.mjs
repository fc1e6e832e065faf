// Test identity provider for the tokenrevoke end-to-end tests: a real oidc-provider
// (certified OpenID Provider) on 127.0.0.1, configured from a JSON file or the
// environment. Prints one JSON line on stdout when ready and exits when its stdin
// closes (the Go side holds the other end), on SIGTERM or SIGINT.
//
//   node server.mjs [--config FILE] [--port N]
//   IDP_CONFIG=FILE IDP_PORT=N node server.mjs
//
// Configuration (every field optional):
//   {
//     "port": 0,                        // 0 = a free port
//     "issuer": "http://127.0.0.1:<port>", // override to sit behind a gateway; a path is
//                                       // served on the local listener as well
//     "accessTokenAlg": "RS256",        // RS256 | ES256 | EdDSA: JWT access tokens
//     "idTokenAlg": "RS256",            // RS256 | ES256 | EdDSA: ID tokens and logout tokens
//     "accessTokenTTL": 600,            // seconds
//     "refreshTokenTTL": 86400,
//     "sessionTTL": 86400,
//     "resource": "https://api.tokenrevoke.test", // resource indicator = aud of access tokens
//     "rotateRefreshToken": true,
//     "backchannelTimeoutMs": 10000,    // per back-channel logout POST
//     "clients": [{
//       "client_id": "rp", "client_secret": "rp-secret",
//       "redirect_uris": ["http://127.0.0.1/tokenrevoke-e2e/callback"],
//       "post_logout_redirect_uris": [...],
//       "backchannel_logout_uris": ["http://127.0.0.1:<gw>/api/id/v1/auth/backchannel-logout", ...]
//     }]
//   }
//
// Endpoints of the local listener besides the provider's own:
//   POST /__test/backchannel-logout  TEST HOOK ONLY. Body JSON {"sub": "...", "sid"?: "...",
//        "client_id"?: "..."}: the provider signs a logout token with its own key (no sid
//        unless given) and POSTs it to the client's back-channel logout URI(s). Answers
//        {"deliveries": [{"client_id", "uri", "status", "error"}]}.
//   POST /__test/fanout/<client_id>  relay used as the registered backchannel_logout_uri
//        when a client lists several: forwards the provider's form POST unchanged to each
//        of them and answers 200 only if every one answered 200 or 204.
//   GET  /__test/events              the back-channel deliveries seen so far.
//   GET  /__test/requests            every request the listener got (method and path only,
//        never a parameter: no token or secret), the test hooks' own excepted.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const log = (obj) => process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), ...obj })}\n`);

// ---------------------------------------------------------------- configuration

const { values: argv } = parseArgs({
  options: {
    config: { type: 'string' },
    port: { type: 'string' },
  },
  strict: true,
});

const configFile = argv.config ?? process.env.IDP_CONFIG;
const cfg = configFile ? JSON.parse(fs.readFileSync(configFile, 'utf8')) : {};
const port = Number(argv.port ?? process.env.IDP_PORT ?? cfg.port ?? 0);
const ALGS = new Set(['RS256', 'ES256', 'EdDSA']);
const accessTokenAlg = cfg.accessTokenAlg ?? process.env.IDP_ACCESS_TOKEN_ALG ?? 'RS256';
const idTokenAlg = cfg.idTokenAlg ?? process.env.IDP_ID_TOKEN_ALG ?? 'RS256';
for (const [name, alg] of [['accessTokenAlg', accessTokenAlg], ['idTokenAlg', idTokenAlg]]) {
  if (!ALGS.has(alg)) throw new Error(`${name} must be one of ${[...ALGS].join(', ')}, got ${alg}`);
}
const resource = cfg.resource ?? 'https://api.tokenrevoke.test';
const accessTokenTTL = cfg.accessTokenTTL ?? 600;
const refreshTokenTTL = cfg.refreshTokenTTL ?? 86400;
const sessionTTL = cfg.sessionTTL ?? 86400;
const rotateRefreshToken = cfg.rotateRefreshToken ?? true;
const clientsIn = cfg.clients ?? [{}];

// ---------------------------------------------------------------- keys

// One key of each kind in the JWKS; the provider picks the key by the alg it signs with.
// Fresh keys every start (generated off the main thread while the listener binds).
async function jwk(kid, type, opts) {
  const { privateKey } = await new Promise((resolve, reject) => {
    crypto.generateKeyPair(type, opts, (err, publicKey, pk) => (err ? reject(err) : resolve({ privateKey: pk })));
  });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}
const keysP = Promise.all([
  jwk('rs256-1', 'rsa', { modulusLength: 2048 }),
  jwk('es256-1', 'ec', { namedCurve: 'P-256' }),
  jwk('eddsa-1', 'ed25519', {}),
]);

// ---------------------------------------------------------------- listener first

// The local listener is bound before the provider is built, so that the relay URL of
// clients with several back-channel logout URIs can name its port.
let app = (_req, res) => { res.writeHead(503).end(); };
const server = http.createServer((req, res) => app(req, res));
server.keepAliveTimeout = 1000;
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const boundPort = server.address().port;
const direct = `http://127.0.0.1:${boundPort}`;
const issuer = cfg.issuer ?? process.env.IDP_ISSUER ?? direct;
const prefix = new URL(issuer).pathname.replace(/\/$/, '');
const keys = await keysP;

// ---------------------------------------------------------------- clients

const deliveries = []; // back-channel logout deliveries (provider-made and test hook)
const requests = []; // method and path of every request but the test hooks' (GET /__test/requests)

const clients = clientsIn.map((c, i) => {
  const clientId = c.client_id ?? (i === 0 ? 'rp' : `rp${i + 1}`);
  const uris = c.backchannel_logout_uris ?? (c.backchannel_logout_uri ? [c.backchannel_logout_uri] : []);
  const meta = {
    client_id: clientId,
    client_secret: c.client_secret ?? `${clientId}-secret`,
    // A confidential web client. oidc-provider 9 accepts http:// for backchannel_logout_uri
    // (validated as a "web URI", http or https) and for redirect_uris of web clients that do
    // not use the implicit flow, so no application_type trick is needed.
    application_type: 'web',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: c.redirect_uris ?? ['http://127.0.0.1/tokenrevoke-e2e/callback'],
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    id_token_signed_response_alg: c.id_token_signed_response_alg ?? idTokenAlg,
  };
  if (uris.length === 1) {
    [meta.backchannel_logout_uri] = uris;
  } else if (uris.length > 1) {
    meta.backchannel_logout_uri = `${direct}/__test/fanout/${encodeURIComponent(clientId)}`;
  }
  if (meta.backchannel_logout_uri) {
    meta.backchannel_logout_session_required = c.backchannel_logout_session_required ?? true;
  }
  return { meta, uris };
});
const clientUris = new Map(clients.map(({ meta, uris }) => [meta.client_id, uris]));

// oidc-provider 9 sends its outgoing requests (back-channel logout among them) through an
// SSRF-guarded dispatcher that drops connections to special-use addresses, 127.0.0.0/8
// included. Its `fetch` configuration hook is the supported way around it: requests to a
// registered back-channel logout URI go out through Node's ordinary global dispatcher,
// with a longer timeout than the provider's 2.5 s (a gateway under test on a loaded
// machine may be slow); every other outgoing request keeps the guard.
const backchannelTimeoutMs = cfg.backchannelTimeoutMs ?? 10000;
const allowLoopback = new Set(clients.map(({ meta }) => meta.backchannel_logout_uri).filter(Boolean));
// eslint-disable-next-line no-unused-expressions
Response; // loads Node's fetch, which installs the global dispatcher
const globalDispatcher = globalThis[Symbol.for('undici.globalDispatcher.2')]
  ?? globalThis[Symbol.for('undici.globalDispatcher.1')];
function providerFetch(url, options) {
  if (allowLoopback.has(new URL(url).href) || allowLoopback.has(String(url))) {
    const opts = { ...options, signal: AbortSignal.timeout(backchannelTimeoutMs) };
    if (globalDispatcher) opts.dispatcher = globalDispatcher; else delete opts.dispatcher;
    return fetch(url, opts);
  }
  return fetch(url, options);
}

// ---------------------------------------------------------------- provider

const provider = new Provider(issuer, {
  clients: clients.map(({ meta }) => meta),
  jwks: { keys },
  // Any login name is an account whose sub is that name (the devInteractions login form
  // takes any login and password).
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() { return { sub: id, name: id }; },
    };
  },
  claims: { openid: ['sub'], profile: ['name'] },
  scopes: ['openid', 'offline_access', 'api'],
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: true }, // the provider's own login and consent pages
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    revocation: {
      enabled: true,
      // the library default, made explicit
      async allowedPolicy(_ctx, client, token) {
        if (token.clientId !== client.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
    introspection: {
      enabled: true,
      async allowedPolicy(_ctx, client, token) {
        return token.clientId === client.clientId;
      },
    },
    // Access tokens are JWTs (RFC 9068) for one resource server: the resource is the
    // default at the authorization request and reused at the token endpoint.
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, _client, oneOf) {
        if (oneOf) return oneOf.includes(resource) ? resource : oneOf[0];
        return resource;
      },
      async useGrantedResource() { return true; },
      async getResourceServerInfo(_ctx, indicator) {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: resource,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: accessTokenAlg } },
        };
      },
    },
  },
  // The session id of the login (the `sid` the back-channel logout token carries, per
  // client) goes into every access token, refreshed ones included: the token remembers
  // the sid of the authorization code or refresh token it came from. oidc-provider puts a
  // sid there only for clients with back-channel (or front-channel) logout; for others
  // it is read from the provider session the token belongs to, while that lives.
  async extraTokenClaims(_ctx, token) {
    if (token.kind !== 'AccessToken') return undefined;
    let { sid } = token;
    if (!sid && token.sessionUid) {
      const session = await provider.Session.findByUid(token.sessionUid);
      sid = session?.sidFor(token.clientId);
    }
    return sid ? { sid } : undefined;
  },
  // A refresh token with every code grant of a client allowed refresh_token, without
  // offline_access. Without offline_access (the default of client.mjs) tokens expire with
  // the session; with it (client.mjs login --offline, which adds prompt=consent) they
  // outlive a logout.
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  rotateRefreshToken,
  pkce: { required: () => true },
  ttl: {
    AccessToken: accessTokenTTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: sessionTTL,
    Grant: sessionTTL,
    RefreshToken: refreshTokenTTL,
  },
  fetch: providerFetch,
});
provider.proxy = true; // honour X-Forwarded-* when reached through a gateway

for (const ev of ['backchannel.success', 'backchannel.error']) {
  provider.on(ev, (...args) => {
    const err = ev === 'backchannel.error' ? args[1] : undefined;
    const [, , client, sub, sid] = ev === 'backchannel.error' ? args : [undefined, ...args];
    const rec = {
      event: ev, source: 'end_session', client_id: client.clientId, sub, sid, error: err && `${err.message}${err.cause ? `: ${err.cause.message ?? err.cause}` : ''}`,
    };
    deliveries.push(rec);
    log(rec);
  });
}
provider.on('server_error', (ctx, err) => log({ event: 'server_error', path: ctx?.path, error: err?.stack }));
provider.on('end_session.success', (ctx) => log({ event: 'end_session.success', path: ctx?.path }));
provider.on('grant.revoked', (_ctx, grantId) => log({ event: 'grant.revoked', grant_id: grantId }));

// ---------------------------------------------------------------- test hooks

async function readBody(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function post(uri, body, contentType) {
  try {
    const res = await fetch(uri, {
      method: 'POST',
      headers: { 'content-type': contentType },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(backchannelTimeoutMs - 1000),
    });
    await res.arrayBuffer();
    return { status: res.status };
  } catch (err) {
    return { status: 0, error: err.cause?.message ?? err.message };
  }
}

// Registered before the provider's own routes (Provider is a Koa application).
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/__test/')) return next();

  // TEST HOOK: a sub-only logout token, signed by the provider exactly as its own
  // back-channel logout tokens are (oidc-provider's Client#backchannelLogout, without sid).
  if (ctx.method === 'POST' && ctx.path === '/__test/backchannel-logout') {
    const input = JSON.parse((await readBody(ctx)).toString('utf8') || '{}');
    if (!input.sub) ctx.throw(400, 'sub is required');
    const out = [];
    const targets = input.client_id ? [input.client_id] : [...clientUris.keys()];
    for (const clientId of targets) {
      const client = await provider.Client.find(clientId);
      if (!client) ctx.throw(404, `no client ${clientId}`);
      const logoutToken = new provider.IdToken({ sub: input.sub }, { client, ctx: undefined });
      logoutToken.mask = { sub: null };
      logoutToken.set('events', { 'http://schemas.openid.net/event/backchannel-logout': {} });
      logoutToken.set('jti', crypto.randomUUID());
      if (input.sid) logoutToken.set('sid', input.sid);
      const token = await logoutToken.issue({ use: 'logout' });
      const body = new URLSearchParams({ logout_token: token }).toString();
      for (const uri of clientUris.get(clientId) ?? []) {
        const r = await post(uri, body, 'application/x-www-form-urlencoded');
        const rec = {
          event: 'test.backchannel', source: 'test_hook', client_id: clientId, uri, sub: input.sub, sid: input.sid, ...r,
        };
        deliveries.push(rec);
        log(rec);
        out.push({ client_id: clientId, uri, ...r });
      }
    }
    ctx.body = { deliveries: out };
    return undefined;
  }

  // Fan-out relay for a client with several back-channel logout URIs: the provider's POST,
  // byte for byte, to each of them.
  const m = ctx.path.match(/^\/__test\/fanout\/([^/]+)$/);
  if (ctx.method === 'POST' && m) {
    const clientId = decodeURIComponent(m[1]);
    const body = await readBody(ctx);
    const results = await Promise.all((clientUris.get(clientId) ?? []).map(async (uri) => ({
      uri, ...await post(uri, body, ctx.get('content-type')),
    })));
    for (const r of results) log({ event: 'fanout', client_id: clientId, ...r });
    ctx.status = results.length && results.every((r) => r.status === 200 || r.status === 204) ? 200 : 502;
    ctx.body = { results };
    return undefined;
  }

  if (ctx.method === 'GET' && ctx.path === '/__test/requests') {
    ctx.body = { requests };
    return undefined;
  }

  if (ctx.method === 'GET' && ctx.path === '/__test/events') {
    ctx.body = { deliveries };
    return undefined;
  }
  return ctx.throw(404);
});

// ---------------------------------------------------------------- serve

const callback = provider.callback();
app = (req, res) => {
  if (!req.url.startsWith('/__test/')) requests.push({ method: req.method, path: req.url.split('?')[0] });
  // Serve the issuer's path (if any) on the local listener too, the way koa-mount does.
  if (prefix && !req.url.startsWith('/__test/')) {
    if (req.url !== prefix && !req.url.startsWith(`${prefix}/`) && !req.url.startsWith(`${prefix}?`)) {
      res.writeHead(404).end();
      return;
    }
    req.originalUrl = req.url;
    req.url = req.url.slice(prefix.length) || '/';
    if (req.url.startsWith('?')) req.url = `/${req.url}`;
  }
  callback(req, res);
};

const at = (name) => `${direct}${provider.pathFor(name)}`;
const ready = {
  issuer,
  port: boundPort,
  url: direct,
  discovery: `${direct}${prefix}/.well-known/openid-configuration`,
  jwks_uri: at('jwks'),
  authorization_endpoint: at('authorization'),
  token_endpoint: at('token'),
  revocation_endpoint: at('revocation'),
  introspection_endpoint: at('introspection'),
  end_session_endpoint: at('end_session'),
  test_backchannel_logout: `${direct}/__test/backchannel-logout`,
  resource,
  access_token_alg: accessTokenAlg,
  id_token_alg: idTokenAlg,
  clients: clients.map(({ meta, uris }) => ({
    client_id: meta.client_id,
    client_secret: meta.client_secret,
    redirect_uris: meta.redirect_uris,
    backchannel_logout_uri: meta.backchannel_logout_uri,
    backchannel_logout_uris: uris,
  })),
  pid: process.pid,
};
process.stdout.write(`${JSON.stringify(ready)}\n`);

// ---------------------------------------------------------------- stop

function stop(why) {
  log({ event: 'stop', why });
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
if (!process.env.IDP_IGNORE_STDIN) { // set it to run the server by hand with </dev/null
  process.stdin.on('end', () => stop('stdin closed'));
  process.stdin.on('error', () => stop('stdin error'));
  process.stdin.resume();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
