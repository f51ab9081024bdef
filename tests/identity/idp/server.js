// The OpenID Provider of the identity tests: the certified `oidc-provider` package, on a loopback port.
// Started by tests/identity/oidc_idp.py with IDP_PORT, IDP_CLIENT (JSON: client_id, client_secret,
// redirect_uris, post_logout_redirect_uris) and IDP_ACCOUNTS_FILE (JSON: account id -> claims, read at every
// sign-in, so that a test can change a user's groups between two sign-ins).
// Its built-in development login page signs in any account id listed in that file (the password is not
// checked: the provider's own authentication is not what these tests are about).
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const port = Number(process.env.IDP_PORT);
const client = JSON.parse(process.env.IDP_CLIENT);
const issuer = `http://127.0.0.1:${port}`;

const configuration = {
  clients: [{
    ...client,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // PKCE is required for every authorization request (S256 only).
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email'],
    groups: ['groups'],
  },
  // Claims of the granted scopes go into the ID token itself (FaceTrail reads roles from it).
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  ttl: { IdToken: Number(process.env.IDP_ID_TOKEN_TTL || 3600) },
  cookies: { keys: ['facetrail-test-idp-cookie-key'] },
  async findAccount(ctx, id) {
    const claims = JSON.parse(readFileSync(process.env.IDP_ACCOUNTS_FILE, 'utf8'))[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
};

const provider = new Provider(issuer, configuration);
provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
