// Conventional Commits for pull requests (ci.yml, wagoid/commitlint-github-action).
export default {
  extends: ["@commitlint/config-conventional"],
  rules: {
    "scope-case": [2, "always", "kebab-case"],
    "body-max-line-length": [1, "always", 100],
  },
};
