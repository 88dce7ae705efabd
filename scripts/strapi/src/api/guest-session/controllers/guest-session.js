const { factories } = require('@strapi/strapi');

module.exports = factories.createCoreController('api::guest-session.guest-session');
