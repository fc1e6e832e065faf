// OAuth client CLI for the tokenrevoke end-to-end tests, built on openid-client (itself on
// oauth4webapi). It plays the relying party and, for logins and logouts, the user's
// browser: it follows the provider's redirects and fills in its real login, consent and
// logout forms over HTTP, keeping the provider's cookies in a small jar.
//
// Every command prints one JSON object on stdout. login, refresh and logout exit 1 on
// any failure (message on stderr); revoke and introspect print the HTTP status and body
// of whatever answered and exit 0 when an answer came back.
//
//   node client.mjs login      --discovery URL --user alice [--password p] [--scope "openid api"] [--offline]
//   node client.mjs refresh    --discovery URL --refresh-token RT
//   node client.mjs logout     --discovery URL --id-token IDT --cookies JAR
//   node client.mjs revoke     [--discovery URL] [--endpoint URL] --token T [--hint access_token]
//   node client.mjs introspect --discovery URL --token T [--hint refresh_token]
//
// Common flags: --issuer (expected issuer; checked against discovery), --client-id (rp),
// --client-secret (rp-secret), --redirect-uri, --timeout SECONDS (10), and endpoint
// overrides --authorization-endpoint, --token-endpoint, --revocation-endpoint (or
// --endpoint), --introspection-endpoint, --end-session-endpoint, --jwks-uri.
// IDP_DISCOVERY and IDP_ISSUER stand in for --discovery and --issuer.

import { parseArgs } from 'node:util';

import * as client from 'openid-client';

const { values: o, positionals } = parseArgs({
  allowPositionals: true,
  strict: true,
  options: {
    discovery: { type: 'string' },
    issuer: { type: 'string' },
    'client-id': { type: 'string', default: 'rp' },
    'client-secret': { type: 'string', default: 'rp-secret' },
    'redirect-uri': { type: 'string', default: 'http://127.0.0.1/tokenrevoke-e2e/callback' },
    'post-logout-redirect-uri': { type: 'string' },
    timeout: { type: 'string', default: '10' },
    'authorization-endpoint': { type: 'string' },
    'token-endpoint': { type: 'string' },
    'revocation-endpoint': { type: 'string' },
    endpoint: { type: 'string' },
    'introspection-endpoint': { type: 'string' },
    'end-session-endpoint': { type: 'string' },
    'jwks-uri': { type: 'string' },
    'id-token-alg': { type: 'string' },
    user: { type: 'string' },
    password: { type: 'string', default: 'password' },
    scope: { type: 'string', default: 'openid api' },
    offline: { type: 'boolean', default: false },
    resource: { type: 'string' },
    'refresh-token': { type: 'string' },
    'id-token': { type: 'string' },
    cookies: { type: 'string' },
    token: { type: 'string' },
    hint: { type: 'string' },
  },
});

const timeoutS = Number(o.timeout);
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const need = (name) => {
  if (!o[name]) throw new Error(`--${name} is required`);
  return o[name];
};

// ---------------------------------------------------------------- configuration

// The discovery document is read from where the provider listens (--discovery), its
// issuer checked against --issuer when given (the issuer may name a gateway in front of
// the provider), then endpoints are overridden from flags. openid-client does the rest.
async function configuration({ optionalDiscovery = false } = {}) {
  let meta = {};
  const disc = o.discovery ?? process.env.IDP_DISCOVERY;
  if (disc) {
    let url = new URL(disc);
    if (!url.pathname.includes('/.well-known/')) {
      url = new URL(`${url.pathname.replace(/\/$/, '')}/.well-known/openid-configuration`, url);
    }
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutS * 1000), headers: { accept: 'application/json' } });
    if (res.status !== 200) throw new Error(`discovery ${url}: HTTP ${res.status}`);
    meta = await res.json();
    const expected = o.issuer ?? process.env.IDP_ISSUER;
    if (expected && meta.issuer !== expected) {
      throw new Error(`discovery ${url}: issuer ${meta.issuer}, expected ${expected}`);
    }
  } else if (!optionalDiscovery) {
    throw new Error('--discovery (or IDP_DISCOVERY) is required');
  }
  const overrides = {
    authorization_endpoint: o['authorization-endpoint'],
    token_endpoint: o['token-endpoint'],
    revocation_endpoint: o['revocation-endpoint'] ?? o.endpoint,
    introspection_endpoint: o['introspection-endpoint'],
    end_session_endpoint: o['end-session-endpoint'],
    jwks_uri: o['jwks-uri'],
  };
  for (const [k, v] of Object.entries(overrides)) if (v) meta[k] = v;
  meta.issuer ??= o.issuer ?? new URL(meta.revocation_endpoint ?? meta.token_endpoint).origin;

  const clientMeta = { client_secret: o['client-secret'] };
  if (o['id-token-alg']) clientMeta.id_token_signed_response_alg = o['id-token-alg'];
  const config = new client.Configuration(meta, o['client-id'], clientMeta, client.ClientSecretBasic(o['client-secret']));
  client.allowInsecureRequests(config); // everything is http on 127.0.0.1
  config.timeout = timeoutS;
  // Keep the last answer the library got, for the commands that report it.
  config[client.customFetch] = async (url, options) => {
    const res = await fetch(url, options);
    config.last = { url, status: res.status, body: await res.clone().text() };
    return res;
  };
  return config;
}

// ---------------------------------------------------------------- the "browser"

// A cookie jar: host name (cookies ignore ports, as in browsers), path-prefix matching,
// expiry by Max-Age/Expires. Enough for the provider's _session, _interaction and
// _interaction_resume cookies (and their .sig), whether it is reached directly or
// through a gateway on another port.
class Jar {
  constructor(cookies = []) { this.cookies = cookies; }

  static load(s) { return new Jar(s ? JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) : []); }

  dump() { return Buffer.from(JSON.stringify(this.cookies)).toString('base64url'); }

  header(url) {
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => !c.expires || c.expires > now);
    return this.cookies
      .filter((c) => c.host === url.hostname && (url.pathname === c.path || url.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`)))
      .map((c) => `${c.name}=${c.value}`).join('; ');
  }

  store(url, res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const c = { name: pair.slice(0, eq), value: pair.slice(eq + 1), host: url.hostname, path: '/' };
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        const key = k.toLowerCase();
        if (key === 'path') c.path = v || '/';
        else if (key === 'max-age') c.expires = Date.now() + Number(v) * 1000;
        else if (key === 'expires' && c.expires === undefined) c.expires = Date.parse(v);
      }
      this.cookies = this.cookies.filter((x) => !(x.name === c.name && x.host === c.host && x.path === c.path));
      if (c.value !== '' && !(c.expires !== undefined && c.expires <= Date.now())) this.cookies.push(c);
    }
  }
}

const decodeEntities = (s) => s.replace(/&(#x?[0-9a-f]+|amp|lt|gt|quot|apos);/gi, (_, e) => {
  const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
  if (named[e.toLowerCase()]) return named[e.toLowerCase()];
  return String.fromCodePoint(e[1].toLowerCase() === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
});
const attr = (tag, name) => {
  const m = tag.match(new RegExp(`\\s${name}="([^"]*)"`, 'i'));
  return m ? decodeEntities(m[1]) : undefined;
};

// The first form of a page: its action and its named inputs.
function parseForm(html, base) {
  const m = html.match(/<form\b[^>]*>([\s\S]*?)<\/form>/i);
  if (!m) return undefined;
  const tag = m[0].slice(0, m[0].indexOf('>') + 1);
  const fields = {};
  for (const input of m[1].matchAll(/<input\b[^>]*>/gi)) {
    const name = attr(input[0], 'name');
    if (name) fields[name] = attr(input[0], 'value') ?? '';
  }
  return {
    id: attr(tag, 'id'),
    method: (attr(tag, 'method') ?? 'get').toUpperCase(),
    action: new URL(attr(tag, 'action') ?? base.href, base),
    fields,
  };
}

// Walks the provider's pages like a user would: follows redirects, signs in with
// --user/--password, confirms consent and logout. Stops at the client's redirect URI (or
// at a page without a form) and returns that URL or page.
async function browse(jar, start, { stopAt, user, password, confirmLogout }) {
  let url = new URL(start);
  let method = 'GET';
  let body;
  const trail = [];
  const forms = [];
  for (let hop = 0; hop < 25; hop += 1) {
    if (stopAt && url.href.startsWith(stopAt)) return { url, trail, forms };
    const headers = { cookie: jar.header(url), accept: 'text/html' };
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(url, {
      method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(timeoutS * 1000),
    });
    jar.store(url, res);
    const text = await res.text();
    trail.push(`${method} ${url.pathname} -> ${res.status}`);
    method = 'GET';
    body = undefined;
    if (res.status >= 300 && res.status < 400) {
      url = new URL(res.headers.get('location'), url);
      continue;
    }
    if (res.status !== 200) {
      throw new Error(`${trail.at(-1)}: ${text.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 500)}`);
    }
    const form = parseForm(text, url);
    if (!form) return { url, page: text, trail, forms };
    forms.push(form.id ?? form.fields.prompt ?? form.action.pathname);
    if ('login' in form.fields) {
      if (!user) throw new Error('the provider asks for a login and no --user was given');
      form.fields.login = user;
      form.fields.password = password;
    }
    if (form.id === 'op.logoutForm') {
      // the "Yes, sign me out" button (it sits outside the form, name=logout value=yes)
      if (confirmLogout) form.fields.logout = 'yes';
    }
    const params = new URLSearchParams(form.fields).toString();
    if (form.method === 'POST') {
      method = 'POST';
      body = params;
      url = form.action;
    } else {
      url = new URL(form.action);
      url.search = params;
    }
  }
  throw new Error(`too many hops: ${trail.join(', ')}`);
}

// ---------------------------------------------------------------- commands

function decodeJwt(jwt) {
  try {
    return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

function tokensOut(tokens, extra = {}) {
  const idClaims = tokens.id_token ? tokens.claims() : undefined;
  const at = decodeJwt(tokens.access_token);
  return {
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    id_token: tokens.id_token,
    token_type: tokens.token_type,
    scope: tokens.scope,
    expires_in: tokens.expires_in,
    sid: idClaims?.sid ?? at?.sid,
    sub: idClaims?.sub ?? at?.sub,
    ...extra,
  };
}

async function login() {
  const config = await configuration();
  const user = need('user');
  const redirectUri = o['redirect-uri'];
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const scope = o.offline ? `${o.scope} offline_access` : o.scope;
  const params = {
    redirect_uri: redirectUri,
    scope,
    response_type: 'code',
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  };
  if (o.offline) params.prompt = 'consent'; // oidc-provider grants offline_access only with it
  if (o.resource) params.resource = o.resource;
  const authUrl = client.buildAuthorizationUrl(config, params);

  const jar = new Jar();
  const { url: callback, trail } = await browse(jar, authUrl, { stopAt: redirectUri, user, password: o.password });
  if (!callback.href.startsWith(redirectUri)) throw new Error(`login did not come back to ${redirectUri}: ${trail.join(', ')}`);

  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  out(tokensOut(tokens, { cookies: jar.dump() }));
}

async function refresh() {
  const config = await configuration();
  const tokens = await client.refreshTokenGrant(config, need('refresh-token'));
  out(tokensOut(tokens));
}

// RP-initiated logout as the browser that logged in (its cookies carry the provider's
// session): the end_session endpoint's confirmation form, answered "Yes, sign me out".
// The provider sends the back-channel logout tokens before it answers that POST.
async function logout() {
  const config = await configuration();
  const jar = Jar.load(o.cookies);
  const params = { id_token_hint: need('id-token') };
  if (o['post-logout-redirect-uri']) params.post_logout_redirect_uri = o['post-logout-redirect-uri'];
  const url = client.buildEndSessionUrl(config, params);
  const stopAt = o['post-logout-redirect-uri'];
  const { url: last, trail, forms } = await browse(jar, url, { stopAt, confirmLogout: true });
  // Without the provider's session cookie the provider shows no confirmation form, posts
  // an empty logout by itself, and no back-channel logout happens.
  if (!forms.includes('op.logoutForm')) throw new Error(`no logout confirmation page, no provider session in the cookies? ${trail.join(', ')}`);
  const confirmed = trail.some((t) => /^POST .*\/session\/end\/confirm -> 30\d$/.test(t));
  if (!confirmed) throw new Error(`logout was not confirmed: ${trail.join(', ')}`);
  out({ ok: true, final_url: last.href, trail, cookies: jar.dump() });
}

async function revoke() {
  const config = await configuration({ optionalDiscovery: true });
  const params = o.hint ? { token_type_hint: o.hint } : undefined;
  let error;
  try {
    await client.tokenRevocation(config, need('token'), params);
  } catch (err) {
    error = `${err.name}: ${err.message}${err.cause?.error ? ` (${err.cause.error})` : ''}`;
  }
  if (!config.last) throw new Error(error ?? 'no answer');
  out({
    endpoint: config.last.url, status: config.last.status, body: config.last.body, error,
  });
}

async function introspect() {
  const config = await configuration();
  const params = o.hint ? { token_type_hint: o.hint } : undefined;
  let result;
  let error;
  try {
    result = await client.tokenIntrospection(config, need('token'), params);
  } catch (err) {
    error = `${err.name}: ${err.message}${err.cause?.error ? ` (${err.cause.error})` : ''}`;
  }
  if (!config.last) throw new Error(error ?? 'no answer');
  out({
    endpoint: config.last.url, status: config.last.status, body: config.last.body, active: result?.active, result, error,
  });
}

const commands = {
  login, refresh, logout, revoke, introspect,
};
const cmd = commands[positionals[0]];
if (!cmd) {
  process.stderr.write(`usage: client.mjs ${Object.keys(commands).join('|')} [flags]\n`);
  process.exit(2);
}
try {
  await cmd();
} catch (err) {
  process.stderr.write(`client.mjs ${positionals[0]}: ${err.name}: ${err.message}\n`);
  if (err.cause) process.stderr.write(`cause: ${JSON.stringify(err.cause)}\n`);
  if (process.env.IDP_DEBUG) process.stderr.write(`${err.stack}\n`);
  process.exit(1);
}
