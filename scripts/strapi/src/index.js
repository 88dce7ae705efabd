// Bootstrap of the genesys-relay fixture: when RELAY_FIXTURE_API_TOKEN is set, (re)creates
// the API token "genesys-relay" with exactly that key, as a custom token allowed to find,
// create and update guest sessions, which is the token a customer creates in the admin
// panel (Settings > API Tokens) for the relay. Tests and the local stack choose the key,
// so nothing has to be read back from the server. Without the variable it does nothing.
'use strict';

const TOKEN_NAME = 'genesys-relay';
const PERMISSIONS = [
  'api::guest-session.guest-session.find',
  'api::guest-session.guest-session.create',
  'api::guest-session.guest-session.update',
];

module.exports = {
  register() {},

  async bootstrap({ strapi }) {
    const key = process.env.RELAY_FIXTURE_API_TOKEN;
    if (!key) return;
    const tokens = strapi.service('admin::api-token-content-api');
    const existing = await tokens.getByName(TOKEN_NAME);
    if (existing) await tokens.revoke(existing.id);
    const token = await tokens.create({
      name: TOKEN_NAME,
      description: 'genesys-relay guest sessions (find, create, update)',
      type: 'custom',
      lifespan: null,
      permissions: PERMISSIONS,
    });
    // The service made a random key; store the fixture's instead (same hash and
    // encryption as the service uses).
    await strapi.db.query('admin::api-token').update({
      where: { id: token.id },
      data: {
        accessKey: tokens.hash(key),
        encryptedKey: strapi.service('admin::encryption').encrypt(key),
      },
    });
    strapi.log.info(`API token "${TOKEN_NAME}" ready`);
  },
};
