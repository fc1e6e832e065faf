'use strict';
// A resource server written the common Express way, with the real middleware from npm
// (versions pinned by package-lock.json):
//   node backend_express.js express4          Express 4: qs query parser (its default),
//                                              urlencoded({extended: true}), json(), text()
//   node backend_express.js express5          Express 5 set up as apps ported from 4 do:
//                                              query parser "extended" (qs),
//                                              urlencoded({extended: true}),
//                                              json({type: application/json, application/*+json})
//   node backend_express.js express5-default  Express 5 with its defaults: query parser
//                                              "simple" (node:querystring),
//                                              urlencoded() (extended false), json(), text()
// All three use cookie-parser and passport. Tried in turn, the first that authenticates
// wins:
//   - passport-http-bearer (Authorization "Bearer <t>", req.body.access_token,
//     req.query.access_token), verifying with jsonwebtoken;
//   - passport-jwt with each extractor: fromAuthHeaderAsBearerToken(),
//     fromAuthHeaderWithScheme('jwt'), fromUrlQueryParameter('access_token'),
//     fromBodyField('access_token'), fromHeader('x-auth-token'), and the custom
//     extractors apps write: req.cookies.jwt / req.cookies.access_token (the passport-jwt
//     README's cookie extractor), X-Forwarded-Access-Token (oauth2-proxy's header, bare or
//     "Bearer <t>"), and the first element when qs made req.query / req.body.access_token
//     an array (`Array.isArray(v) ? v[0] : v`);
// passport-jwt verifies with jsonwebtoken (ES256 or HS256, exp checked).
// A body parser error (415 charset, 400 bad JSON) is recorded as not accepted.
// 200 {"accepted":true,...} when accepted, else 401. GET /__seen (sent directly, not
// through the gateway) returns every request it handled.
//
// Environment: DIFF_ES256_PUB (SPKI PEM), DIFF_HS256_SECRET (base64). Prints "PORT <n>".
const crypto = require('crypto');
const flavour = process.argv[2] || 'express4';
const express = require(flavour === 'express4' ? 'express' : 'express5');
const cookieParser = require('cookie-parser');
const passport = require('passport');
const BearerStrategy = require('passport-http-bearer').Strategy;
const { Strategy: JwtStrategy, ExtractJwt } = require('passport-jwt');
const jwt = require('jsonwebtoken');

const esKey = crypto.createPublicKey(process.env.DIFF_ES256_PUB);
const hsSecret = Buffer.from(process.env.DIFF_HS256_SECRET, 'base64');
const seen = [];

// keyFor picks the verification key by the token's alg, as apps with two keys do.
function keyFor(token) {
  const d = jwt.decode(token, { complete: true });
  if (!d || !d.header) return null;
  if (d.header.alg === 'ES256') return esKey;
  if (d.header.alg === 'HS256') return hsSecret;
  return null;
}

function verifyToken(token) {
  try {
    const key = keyFor(token);
    if (!key) return false;
    jwt.verify(token, key, { algorithms: ['ES256', 'HS256'] });
    return true;
  } catch (e) {
    return false;
  }
}

passport.use('bearer', new BearerStrategy((token, done) => {
  done(null, verifyToken(token) ? { token } : false);
}));

const firstOf = (v) => (Array.isArray(v) ? v[0] : v);
const stripBearer = (v) => (typeof v === 'string' ? v.replace(/^Bearer\s+/i, '') : v);
const extractors = [
  ['passport-jwt fromAuthHeaderAsBearerToken', ExtractJwt.fromAuthHeaderAsBearerToken()],
  ['passport-jwt fromAuthHeaderWithScheme(jwt)', ExtractJwt.fromAuthHeaderWithScheme('jwt')],
  ['passport-jwt fromUrlQueryParameter', ExtractJwt.fromUrlQueryParameter('access_token')],
  ['passport-jwt fromBodyField', ExtractJwt.fromBodyField('access_token')],
  ['passport-jwt fromHeader(x-auth-token)', ExtractJwt.fromHeader('x-auth-token')],
  ['req.cookies.jwt', (req) => (req.cookies ? req.cookies.jwt : null)],
  ['req.cookies.access_token', (req) => (req.cookies ? req.cookies.access_token : null)],
  ['x-forwarded-access-token', (req) => stripBearer(req.headers['x-forwarded-access-token'])],
  ['firstOf(req.query.access_token)', (req) => (req.query ? firstOf(req.query.access_token) : null)],
  ['firstOf(req.body.access_token)', (req) => (req.body ? firstOf(req.body.access_token) : null)],
];
for (const [name, fn] of extractors) {
  passport.use(name, new JwtStrategy({
    jwtFromRequest: fn,
    algorithms: ['ES256', 'HS256'],
    passReqToCallback: true,
    secretOrKeyProvider: (req, raw, done) => {
      req.diffRaw = raw;
      const key = typeof raw === 'string' ? keyFor(raw) : null;
      done(key ? null : new Error('no key'), key);
    },
  }, (req, payload, done) => done(null, { token: req.diffRaw })));
}
const strategies = ['bearer', ...extractors.map((e) => e[0])];

function tryStrategy(name, req, res) {
  return new Promise((resolve) => {
    passport.authenticate(name, { session: false }, (err, user) => {
      resolve(!err && user && typeof user.token === 'string' ? user.token : null);
    })(req, res, () => resolve(null));
  });
}

function record(res, path, via, token) {
  const rec = {
    id: path, accepted: !!token, via: token ? via : '',
    token: token ? crypto.createHash('sha256').update(token).digest('hex') : '',
  };
  seen.push(rec);
  res.status(token ? 200 : 401).set('x-diff-backend', flavour).json({ backend: flavour, ...rec });
}

const app = express();
if (flavour === 'express5') app.set('query parser', 'extended');
app.get('/__seen', (req, res) => res.json(seen));
app.use(cookieParser());
app.use(passport.initialize());
if (flavour === 'express5') {
  app.use(express.json({ type: ['application/json', 'application/*+json'] }));
  app.use(express.urlencoded({ extended: true }));
} else if (flavour === 'express5-default') {
  app.use(express.json());
  app.use(express.urlencoded());
} else {
  app.use(express.json());
  app.use(express.urlencoded({ extended: true }));
}
app.use(express.text());
app.use(async (req, res) => {
  for (const name of strategies) {
    const tok = await tryStrategy(name, req, res);
    if (tok) return record(res, req.path, name === 'bearer' ? 'passport-http-bearer' : name, tok);
  }
  record(res, req.path, '', null);
});
// Body parser errors (unsupported charset, malformed JSON, too many parameters): the
// request is refused by the backend, so nothing was accepted.
app.use((err, req, res, next) => { // eslint-disable-line no-unused-vars
  const rec = { id: req.path, accepted: false, via: 'error ' + (err.status || 500), token: '' };
  seen.push(rec);
  res.status(err.status || 500).set('x-diff-backend', flavour).json({ backend: flavour, ...rec });
});

const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write('PORT ' + server.address().port + '\n');
});
