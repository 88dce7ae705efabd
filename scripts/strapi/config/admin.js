// The admin panel is never built or served: the relay only uses the REST API with an
// API token, and building the panel would take minutes and hundreds of MB.
module.exports = ({ env }) => ({
  serveAdminPanel: false,
  autoOpen: false,
  auth: { secret: env('ADMIN_JWT_SECRET', 'relay-fixture-admin-jwt-secret') },
  apiToken: { salt: env('API_TOKEN_SALT', 'relay-fixture-api-token-salt') },
  transfer: { token: { salt: env('TRANSFER_TOKEN_SALT', 'relay-fixture-transfer-salt') } },
  secrets: { encryptionKey: env('ENCRYPTION_KEY', 'relay-fixture-encryption-key-32b') },
});
