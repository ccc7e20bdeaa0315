// A real OpenID Connect provider (npm `oidc-provider`) on loopback, for tests only.
//
// Environment: PORT (required), CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS (space separated);
// ID_TOKEN_CLAIMS=1 puts the scope claims into the ID token too (by default, as the spec
// prefers for the code flow, they are only served by userinfo).
// Accounts: any login name signs in with any password. `alice` -> alice@example.com, a login
// holding `@` is the email itself; a login starting with `unverified-` has email_verified false.
// The scope `corp` adds the custom claims `corp_email` (local@corp.example) and `corp_name`.
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number.parseInt(process.env.PORT ?? '', 10);
if (!Number.isInteger(port)) throw new Error('PORT must be set');
const issuer = `http://127.0.0.1:${port}`;

const account = (login) => {
  const email = login.includes('@') ? login : `${login}@example.com`;
  const local = email.slice(0, email.indexOf('@')).replace(/^unverified-/, '');
  const name = local.charAt(0).toUpperCase() + local.slice(1);
  return {
    accountId: login,
    async claims() {
      return {
        sub: login,
        email,
        email_verified: !login.startsWith('unverified-'),
        name,
        corp_email: `${local}@corp.example`,
        corp_name: `${name} (Corp)`,
      };
    },
  };
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.CLIENT_ID ?? 'uos-test',
    client_secret: process.env.CLIENT_SECRET ?? 'uos-test-secret',
    // `native`: a registered loopback redirect URI matches on any port (RFC 8252 7.3).
    application_type: 'native',
    redirect_uris: (process.env.REDIRECT_URIS ?? '').split(/\s+/).filter(Boolean),
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    corp: ['corp_email', 'corp_name'],
  },
  scopes: ['openid', 'email', 'profile', 'corp'],
  conformIdTokenClaims: process.env.ID_TOKEN_CLAIMS !== '1',
  findAccount: (ctx, sub) => account(sub),
  pkce: { required: () => true },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: { devInteractions: { enabled: true } },
});

// Die with the test process: it holds our stdin open.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
