// What to tell a user whose native addon is missing (it may not load, so this lives apart).
export const BUILD_HINT =
  "build it with 'npm rebuild ivcom' (needs python3, make and a C++ compiler; in a clone of ivcom: npm run build)";
