const { factories } = require('@strapi/strapi');

module.exports = factories.createCoreRouter('api::guest-session.guest-session');
